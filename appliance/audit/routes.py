"""Reading the audit trail (admin only): pages with names resolved for people, CSV export."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import sqlite_utils
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from appliance.audit import display, export, service
from appliance.audit.models import Actor, ChainReport, DisplayPage
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.dependencies import get_db
from appliance.paging import Limit, Offset

router = APIRouter(prefix="/api/audit", tags=["audit"])


Action = Annotated[
    str | None, Query(max_length=64, description="exact, or a prefix ending in '.' (patient.)")
]
Since = Annotated[date | None, Query(description="first day (UTC), included")]
Until = Annotated[date | None, Query(description="last day (UTC), included")]


def _range(since: date | None, until: date | None) -> tuple[str | None, str | None]:
    last = (until + timedelta(days=1)).isoformat() if until else None
    return (since.isoformat() if since else None), last


@router.get("", response_model=DisplayPage)
def list_audit(
    actor: Annotated[Actor, Depends(Allow(Role.ADMIN))],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
    limit: Limit = 50,
    offset: Offset = 0,
    action: Action = None,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=64)] = None,
    since: Since = None,
    until: Until = None,
) -> DisplayPage:
    """Newest first, with each account's full name and the MRN of each row's patient resolved
    for display (the rows hold ids only); reading a page is audited ``audit.read``."""
    first, last = _range(since, until)
    found = service.page(
        db, limit=limit, offset=offset, action=action, actor=actor_name, since=first, until=last
    )
    items = display.resolve(db, found.items)
    service.record(
        db,
        actor,
        "audit.read",
        object_type="audit",
        detail={"action": action, "offset": offset, "rows": len(items)},
    )
    return DisplayPage(items=items, total=found.total, limit=found.limit, offset=found.offset)


@router.get(
    "/export.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, 422: {"description": "Range too large"}},
)
def export_audit(
    actor: Annotated[Actor, Depends(Allow(Role.ADMIN))],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
    action: Action = None,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=64)] = None,
    since: Since = None,
    until: Until = None,
) -> Response:
    """The filtered range as CSV, oldest first, names resolved (audited ``audit.export``)."""
    first, last = _range(since, until)
    text = export.export_csv(
        db, actor, action=action, actor_name=actor_name, since=first, until=last
    )
    name = f"audit-{since or 'start'}-{until or 'now'}.csv"
    return Response(
        content=text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/verify", response_model=ChainReport)
def verify_chain(
    actor: Annotated[Actor, Depends(Allow(Role.ADMIN))],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
) -> ChainReport:
    """Check the hash chain, as ``radiant audit verify`` does."""
    return service.verify(db)
