"""``POST /api/system/mode`` (the online/offline switch) and ``GET /api/sync/status``; both
for administrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.config import Mode
from appliance.context import AppContext
from appliance.dependencies import ReplicationDep, get_context
from sync import status
from sync.golive import go_online, readiness
from sync.mode import set_mode
from sync.models import ModeIn, ModeOut, OnlineCheck, OnlineStep, SyncStatus

router = APIRouter(tags=["sync"])
Ctx = Annotated[AppContext, Depends(get_context)]
Admin = Annotated[Actor, Depends(Allow(Role.ADMIN))]


@router.post(
    "/api/system/mode",
    response_model=ModeOut,
    responses={
        409: {"description": "A remote online mode needs is missing or does not answer"},
        422: {"description": "Going online without confirm: true"},
    },
)
def switch_mode(body: ModeIn, actor: Admin, ctx: Ctx, replication: ReplicationDep) -> ModeOut:
    """Switch the box online (replication, online inference) or offline; audited. Online is
    checked first (see ``GET /api/system/mode/online-check``) and needs ``confirm: true``."""
    db = ctx.pool.get()
    if body.mode is Mode.ONLINE:
        change = go_online(db, ctx.settings, actor, confirmed=body.confirm)
    else:
        change = set_mode(db, ctx.settings, body.mode, actor)
    replication.wake()
    return ModeOut(mode=change.mode, previous=change.previous)


@router.get("/api/system/mode/online-check", response_model=OnlineCheck)
def online_check(actor: Admin, ctx: Ctx) -> OnlineCheck:
    """What going online would start (replication, the online AI endpoint) and whether each
    configured remote answers now; takes seconds (it contacts them)."""
    found = readiness(ctx.settings)
    return OnlineCheck(
        ok=found.ok,
        steps=[OnlineStep(code=s.code, target=s.target, problem=s.problem) for s in found.steps],
        refusal=None if found.ok else found.refusal(),
    )


@router.get("/api/sync/status", response_model=SyncStatus)
def sync_status(actor: Admin, ctx: Ctx) -> SyncStatus:
    """Replication lag of the database, queued/failed files and bytes, the last error."""
    return status.compute(ctx.settings, ctx.pool.get())
