"""``GET /healthz``: liveness and readiness for supervisors and the fleet."""

from __future__ import annotations

from typing import Annotated

import sqlite_utils
from fastapi import APIRouter, Depends, Response

from appliance.auth.access import Public
from appliance.config import Settings
from appliance.dependencies import get_db, get_settings
from appliance.system import service
from appliance.system.models import Health

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health, dependencies=[Depends(Public())])
def healthz(
    response: Response,
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Health:
    """``status`` is ``ok`` when the database answers; 503 with ``degraded`` otherwise."""
    result = service.health(db, settings)
    if result.status != "ok":
        response.status_code = 503
    return result
