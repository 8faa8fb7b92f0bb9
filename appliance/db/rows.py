"""Values every row needs (ids, UTC timestamps) and reading rows as dicts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from appliance.errors import NotFound


def new_id() -> str:
    """A random UUID (RFC 9562 version 4) as text; our ids never encode PHI."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso() -> str:
    return iso(utc_now())


def fetch_one(
    db: sqlite_utils.Database, sql: str, params: tuple[Any, ...] = ()
) -> dict[str, Any] | None:
    """The first row of ``sql`` as a dict of column name to value, or None."""
    cursor = db.execute(sql, params)
    values = cursor.fetchone()
    if values is None:
        return None
    return dict(zip([c[0] for c in cursor.description], values, strict=True))


def fetch_all(db: sqlite_utils.Database, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    """Every row of ``sql`` as a dict of column name to value."""
    cursor = db.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def fetch_found(db: sqlite_utils.Database, sql: str, params: Any, what: str) -> dict[str, Any]:
    """The first row of ``sql`` as a dict; :class:`NotFound` (``"<what> not found"``) if none."""
    found = fetch_all(db, sql, params)
    if not found:
        raise NotFound(f"{what} not found")
    return found[0]


def escape_like(text: str) -> str:
    """``text`` with ``\\``, ``%`` and ``_`` escaped for ``LIKE ? ESCAPE '\\'`` (SQLite: the
    escape character makes the next one literal)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
