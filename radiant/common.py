"""What every ``radiant`` sub-command shares: exit codes, the one-line error, the actor the
audit trail records for the command line, settings from ``--data-dir``, quiet logs and the
prepared data (:func:`appliance.context.prepare`, without the web app)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance import logs
from appliance.audit.models import Actor
from appliance.config import Settings, load_settings

if TYPE_CHECKING:
    from appliance.context import AppContext

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

DataDirOption = Callable[[argparse.ArgumentParser], None]
"""Adds ``--data-dir`` to a sub-command's parser."""


class CliError(Exception):
    """A refused command: ``main`` prints ``radiant: <message>`` and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print the one-line error and return the exit code (for commands that return codes)."""
    print(f"radiant: {message}", file=sys.stderr)
    return code


def cli_actor() -> Actor:
    """Who the audit trail records for a command: the operating-system user at the console."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return Actor(name=f"cli:{who}", role="system", client="localhost")


def cli_settings(args: argparse.Namespace) -> Settings:
    """The settings, with ``--data-dir`` (when the command has it) winning."""
    return load_settings(data_dir=getattr(args, "data_dir", None))


def quiet_logs(settings: Settings) -> Settings:
    """JSON logs on stderr, warnings and worse only: stdout is for the person at the terminal."""
    logs.configure("error" if settings.log_level == "error" else "warning")
    # A refused file's reason is reported per file; the codecs' own tracebacks are noise here.
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    return settings


def open_context(args: argparse.Namespace, *, quiet: bool = True) -> AppContext:
    """The prepared data dir, database and stores of the command's settings (imported here:
    ``radiant --help`` need not load the ingest path)."""
    from appliance.context import prepare

    settings = cli_settings(args)
    return prepare(quiet_logs(settings) if quiet else settings)
