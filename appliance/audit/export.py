"""A filtered range of the audit trail as CSV (RFC 4180), for the hospital's records.

Rows come oldest first with the names resolved for people (:mod:`appliance.audit.display`).
Cells a spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``, tab or carriage
return) are prefixed with ``'`` so opening the file runs nothing. An export names patients'
MRNs: it is audited ``audit.export`` with its filters and row count, and refused when the range
holds more than :data:`MAX_ROWS` rows (narrow it).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import sqlite_utils

from appliance.audit import display, service
from appliance.audit.models import Actor, AuditEntry
from appliance.errors import InvalidInput

MAX_ROWS = 100_000
COLUMNS = (
    "id", "ts", "actor", "actor_name", "role", "action", "object_type", "object_id", "mrn",
    "outcome", "client", "request_id", "detail",
)  # fmt: skip
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_CHUNK = 500


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def export_csv(
    db: sqlite_utils.Database,
    actor: Actor,
    *,
    action: str | None = None,
    actor_name: str | None = None,
    since: str | None = None,
    until: str | None = None,
    max_rows: int = MAX_ROWS,
) -> str:
    """The rows matching the filters as CSV text with a header line; audited."""
    where, params = service.filters(action=action, actor=actor_name, since=since, until=until)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    total = int(db.execute(f"SELECT COUNT(*) FROM audit_log {clause}", params).fetchone()[0])  # noqa: S608
    if total > max_rows:
        raise InvalidInput(
            f"the range holds {total} audit rows, more than {max_rows}: narrow the dates or action",
            rows=total,
            limit=max_rows,
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    fields = ", ".join(service.FIELDS)
    cursor = db.execute(
        f"SELECT {fields}, hash FROM audit_log {clause} ORDER BY id",  # noqa: S608
        params,
    )
    while chunk := cursor.fetchmany(_CHUNK):
        entries = []
        for values in chunk:
            row = dict(zip((*service.FIELDS, "hash"), values, strict=True))
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
            entries.append(AuditEntry(**row))
        for entry in display.resolve(db, entries):
            data = entry.model_dump()
            data["detail"] = json.dumps(data["detail"], sort_keys=True) if data["detail"] else ""
            writer.writerow([_cell(data[name]) for name in COLUMNS])
    service.record(
        db,
        actor,
        "audit.export",
        object_type="audit",
        detail={
            "action": action,
            "actor": actor_name,
            "since": since,
            "until": until,
            "rows": total,
        },
    )
    return out.getvalue()
