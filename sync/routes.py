"""``POST /api/system/mode`` (the online/offline switch) and ``GET /api/sync/status``; both
for administrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import ReplicationDep, get_context
from sync import status
from sync.mode import set_mode
from sync.models import ModeIn, ModeOut, SyncStatus

router = APIRouter(tags=["sync"])
Ctx = Annotated[AppContext, Depends(get_context)]
Admin = Annotated[Actor, Depends(Allow(Role.ADMIN))]


@router.post("/api/system/mode", response_model=ModeOut)
def switch_mode(body: ModeIn, actor: Admin, ctx: Ctx, replication: ReplicationDep) -> ModeOut:
    """Switch the box online (replication, online inference) or offline; audited."""
    change = set_mode(ctx.pool.get(), ctx.settings, body.mode, actor)
    replication.wake()
    return ModeOut(mode=change.mode, previous=change.previous)


@router.get("/api/sync/status", response_model=SyncStatus)
def sync_status(actor: Admin, ctx: Ctx) -> SyncStatus:
    """Replication lag of the database, queued/failed files and bytes, the last error."""
    return status.compute(ctx.settings, ctx.pool.get())
