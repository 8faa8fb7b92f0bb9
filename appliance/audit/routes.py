"""Reading the audit trail (admin only)."""

from __future__ import annotations

from typing import Annotated

import sqlite_utils
from fastapi import APIRouter, Depends, Query

from appliance.audit import service
from appliance.audit.models import Actor, AuditPage, ChainReport
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.dependencies import get_db
from appliance.paging import Limit, Offset

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
def list_audit(
    actor: Annotated[Actor, Depends(Allow(Role.ADMIN))],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
    limit: Limit = 50,
    offset: Offset = 0,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=64)] = None,
) -> AuditPage:
    """Newest first. ``action`` is exact, or a prefix ending in '.' (``patient.``)."""
    return service.page(db, limit=limit, offset=offset, action=action, actor=actor_name)


@router.get("/verify", response_model=ChainReport)
def verify_chain(
    actor: Annotated[Actor, Depends(Allow(Role.ADMIN))],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
) -> ChainReport:
    """Check the hash chain, as ``radiant audit verify`` does."""
    return service.verify(db)
