"""FastAPI dependencies shared by the routers: settings, the database, the caller, and the
running services by type (:class:`~appliance.services.Services`, put on the app by
:func:`appliance.app.create_app`)."""

from __future__ import annotations

from typing import Annotated, cast

import sqlite_utils
from fastapi import Depends, Request

from appliance.config import Settings
from appliance.context import AppContext
from appliance.db.connection import ThreadBoundDatabase
from appliance.jobs.runner import JobRunner
from appliance.services import Replication, Services


def get_services(request: Request) -> Services:
    """The services of the app serving ``request`` (one per app, built at create_app)."""
    return cast(Services, request.app.state.services)


def get_context(request: Request) -> AppContext:
    return get_services(request).ctx


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def get_db(request: Request) -> sqlite_utils.Database:
    """The appliance database, as seen from whichever thread uses it (see ThreadBoundDatabase)."""
    return cast(sqlite_utils.Database, ThreadBoundDatabase(get_services(request).ctx.pool))


def get_jobs(request: Request) -> JobRunner:
    """The job runner: the one way to queue work (see :mod:`appliance.services`)."""
    return get_services(request).jobs


def get_replication(request: Request) -> Replication:
    return get_services(request).sync


Jobs = Annotated[JobRunner, Depends(get_jobs)]
ReplicationDep = Annotated[Replication, Depends(get_replication)]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def request_id(request: Request) -> str | None:
    return cast(str | None, getattr(request.state, "request_id", None))
