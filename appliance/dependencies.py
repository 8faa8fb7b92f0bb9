"""FastAPI dependencies shared by the routers: settings, the database, the caller."""

from __future__ import annotations

from typing import cast

import sqlite_utils
from fastapi import Request

from appliance.config import Settings
from appliance.context import AppContext
from appliance.db.connection import ConnectionPool, ThreadBoundDatabase


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_db(request: Request) -> sqlite_utils.Database:
    """The appliance database, as seen from whichever thread uses it (see ThreadBoundDatabase)."""
    pool = cast(ConnectionPool, request.app.state.db_pool)
    return cast(sqlite_utils.Database, ThreadBoundDatabase(pool))


def get_context(request: Request) -> AppContext:
    return cast(AppContext, request.app.state.ctx)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def request_id(request: Request) -> str | None:
    return cast(str | None, getattr(request.state, "request_id", None))
