"""Which engine the next model call uses (the runtime mode decides local or cloud) and what
it is, for status screens.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from ai.engines.base import Engine
from ai.engines.select import build_engine
from appliance.config import Settings
from appliance.context import AppContext
from appliance.system.mode import effective_mode

EngineFactory = Callable[[], Engine]


def engine_settings(db: sqlite_utils.Database, settings: Settings) -> Settings:
    """The settings an engine is built from: ``RADIANT_MODE`` replaced by the runtime mode (the
    switch on the screen, ``radiant mode`` or the fleet), so one switch moves inference too."""
    mode = effective_mode(db, settings)
    return settings if mode is settings.mode else settings.model_copy(update={"mode": mode})


def current_engine(ctx: AppContext) -> Engine:
    """The engine the next model call uses, per :func:`engine_settings`."""
    return build_engine(engine_settings(ctx.pool.get(), ctx.settings))


def engine_info(
    settings: Settings, db: sqlite_utils.Database | None = None
) -> dict[str, str | bool | None]:
    """What the configured engine is (name, model, endpoint; no secrets), for status screens;
    with ``db``, for the runtime mode. Nothing is loaded or contacted."""
    engine = build_engine(settings if db is None else engine_settings(db, settings))
    try:
        info = dict(engine.describe())
        info["name"] = engine.name
        return info
    finally:
        engine.close()
