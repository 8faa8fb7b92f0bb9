"""What the screens need from the running appliance: the :class:`~appliance.services.Services`
the composition root built (context, job runner, receiver, media watcher, replication), by type.
Set by :func:`ui.mount.mount`; pages read it at each request, so a new app replaces an old one."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TypeVar, cast

import sqlite_utils
from nicegui import run

from appliance.config import Settings
from appliance.context import AppContext
from appliance.services import Services

T = TypeVar("T")


@dataclass
class Runtime:
    services: Services

    @property
    def ctx(self) -> AppContext:
        return self.services.ctx

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def db(self) -> sqlite_utils.Database:
        """The calling thread's connection (call it inside the function run off the loop)."""
        return self.services.ctx.pool.get()


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def get() -> Runtime:
    if _current is None:
        raise RuntimeError("the screen is not mounted on an appliance app")
    return _current


async def off_loop(work: Callable[[], T]) -> T:
    """Run ``work`` in a worker thread (database, files, rendering) so the screen never
    freezes; the database handle must be fetched inside ``work`` (see :meth:`Runtime.db`)."""
    return cast(T, await run.io_bound(work))


FIRST_BOOT_PATH = "/first-boot"


def first_boot_module() -> ModuleType | None:
    """``ui.first_boot`` when it is installed (the provisioning screen), else None."""
    try:
        return importlib.import_module("ui.first_boot")
    except ModuleNotFoundError as exc:
        if exc.name != "ui.first_boot":
            raise
        return None


def unprovisioned() -> bool:
    """Whether the first-boot screen says the box still needs provisioning
    (``ui.first_boot.is_provisioned(settings)``); False without that module."""
    module = first_boot_module()
    check = getattr(module, "is_provisioned", None) if module is not None else None
    if check is None or _current is None:
        return False
    try:
        return not bool(check(_current.settings))
    except Exception:
        return False
