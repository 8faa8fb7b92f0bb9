"""Writing and checking the hash-chained audit log.

Each row stores ``prev_hash`` (the previous row's ``hash``, 64 zeros for the first) and
``hash`` = SHA-256 of the canonical JSON of its own fields and ``prev_hash``. Editing a row breaks
its hash; deleting or reordering rows breaks the next row's ``prev_hash``; deleting the newest
rows is caught against the head kept in ``settings`` (``audit.head``).
Rows carry ids only, never PHI values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlite_utils

from appliance.audit import group_commit
from appliance.audit.models import Actor, AuditEntry, AuditPage, ChainReport
from appliance.canonical import fields_digest
from appliance.db.connection import database_file, snapshot, transaction
from appliance.db.rows import escape_like, now_iso
from appliance.errors import NotFound

T = TypeVar("T")

GENESIS = "0" * 64
HEAD_KEY = "audit.head"
_FIELDS = (
    "id",
    "ts",
    "actor",
    "role",
    "action",
    "object_type",
    "object_id",
    "client",
    "outcome",
    "detail",
    "request_id",
    "prev_hash",
)
#: The audit_log columns an :class:`AuditEntry` is read from (besides ``hash``).
FIELDS = _FIELDS


def _digest(row: dict[str, Any]) -> str:
    return fields_digest(row, _FIELDS)


def record(
    db: sqlite_utils.Database,
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one audit row inside the caller's transaction (or its own); returns its id."""
    with transaction(db):
        # Link to the recorded head, not merely the last row present: if rows at the end were
        # deleted, the next row's link then exposes it.
        head = db.execute("SELECT value FROM settings WHERE key = ?", (HEAD_KEY,)).fetchone()
        if head is not None:
            expected = json.loads(head[0])
            next_id, prev_hash = int(expected["id"]) + 1, str(expected["hash"])
        else:
            last = db.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
            next_id, prev_hash = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
        row: dict[str, Any] = {
            "id": next_id,
            "ts": now_iso(),
            "actor": actor.name,
            "role": actor.role,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "client": actor.client,
            "outcome": outcome,
            "detail": json.dumps(detail, sort_keys=True, separators=(",", ":"))
            if detail is not None
            else None,
            "request_id": actor.request_id,
            "prev_hash": prev_hash,
        }
        row["hash"] = _digest(row)
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        db.execute(f"INSERT INTO audit_log ({columns}) VALUES ({marks})", list(row.values()))  # noqa: S608
        db.execute(
            "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (HEAD_KEY, json.dumps({"id": next_id, "hash": row["hash"]}), row["ts"], "audit"),
        )
    return next_id


def verify(db: sqlite_utils.Database) -> ChainReport:
    """Walk the chain in id order; the first row whose hash or link is wrong is reported."""
    prev = GENESIS
    count = 0
    last_id: int | None = None
    cursor = db.execute(
        f"SELECT {', '.join(_FIELDS)}, hash FROM audit_log ORDER BY id"  # noqa: S608
    )
    for values in cursor:
        row = dict(zip((*_FIELDS, "hash"), values, strict=True))
        count += 1
        if row["id"] != count:
            return ChainReport(
                ok=False,
                rows=count,
                first_bad_id=row["id"],
                reason=f"rows are missing before it (expected id {count})",
            )
        if row["prev_hash"] != prev:
            return ChainReport(
                ok=False,
                rows=count,
                first_bad_id=row["id"],
                reason="link to the previous row is broken (a row before it was deleted, "
                "inserted or edited)",
            )
        if _digest(row) != row["hash"]:
            return ChainReport(
                ok=False,
                rows=count,
                first_bad_id=row["id"],
                reason="content does not match its hash (the row was edited)",
            )
        prev = row["hash"]
        last_id = row["id"]
    head = db.execute("SELECT value FROM settings WHERE key = ?", (HEAD_KEY,)).fetchone()
    if head is not None:
        expected = json.loads(head[0])
        if last_id != expected["id"] or prev != expected["hash"]:
            bad = (last_id or 0) + 1
            return ChainReport(
                ok=False,
                rows=count,
                first_bad_id=bad,
                reason=f"the newest rows are missing: the log ends at id {last_id}, "
                f"but id {expected['id']} was written",
            )
    elif count:
        return ChainReport(
            ok=False, rows=count, first_bad_id=1, reason="the chain head record is missing"
        )
    return ChainReport(ok=True, rows=count)


def head(db: sqlite_utils.Database) -> tuple[int, str] | None:
    """The newest row's id and stored hash, None for an empty log."""
    last = db.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return (int(last[0]), str(last[1])) if last else None


def row_digests(
    db: sqlite_utils.Database, first_id: int, last_id: int
) -> Iterator[tuple[int, str, str, str]]:
    """For each row ``first_id..last_id`` in id order: id, the hash recomputed from its
    content, the stored hash and the stored ``prev_hash``."""
    cursor = db.execute(
        f"SELECT {', '.join(_FIELDS)}, hash FROM audit_log"  # noqa: S608
        " WHERE id BETWEEN ? AND ? ORDER BY id",
        (first_id, last_id),
    )
    for values in cursor:
        row = dict(zip((*_FIELDS, "hash"), values, strict=True))
        yield int(row["id"]), _digest(row), str(row["hash"]), str(row["prev_hash"])


def page(
    db: sqlite_utils.Database,
    *,
    limit: int,
    offset: int,
    action: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> AuditPage:
    """Newest first; ``action`` matches exactly or as a prefix ending in ``.`` (``patient.``);
    ``since`` / ``until`` (ISO 8601 UTC, ``until`` excluded) bound the time."""
    where, params = filters(action=action, actor=actor, since=since, until=until)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    total = db.execute(f"SELECT COUNT(*) FROM audit_log {clause}", params).fetchone()[0]  # noqa: S608
    rows = db.execute(
        f"SELECT {', '.join(_FIELDS)}, hash FROM audit_log {clause}"  # noqa: S608
        " ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    items = []
    for values in rows:
        row = dict(zip((*_FIELDS, "hash"), values, strict=True))
        row["detail"] = json.loads(row["detail"]) if row["detail"] else None
        items.append(AuditEntry(**row))
    return AuditPage(items=items, total=total, limit=limit, offset=offset)


def filters(
    *,
    action: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> tuple[list[str], list[Any]]:
    """The WHERE terms and parameters of an audit query (see :func:`page`)."""
    where: list[str] = []
    params: list[Any] = []
    if action:
        if action.endswith("."):
            where.append("action LIKE ? ESCAPE '\\'")
            params.append(escape_like(action) + "%")
        else:
            where.append("action = ?")
            params.append(action)
    if actor:
        where.append("actor = ?")
        params.append(actor)
    if since:
        where.append("ts >= ?")
        params.append(since)
    if until:
        where.append("ts < ?")
        params.append(until)
    return where, params


def latest(
    db: sqlite_utils.Database, action: str, object_id: str, outcome: str = "success"
) -> AuditEntry | None:
    """The newest row of ``action`` on ``object_id`` with ``outcome``, if any."""
    values = db.execute(
        f"SELECT {', '.join(_FIELDS)}, hash FROM audit_log"  # noqa: S608
        " WHERE action = ? AND object_id = ? AND outcome = ? ORDER BY id DESC LIMIT 1",
        (action, object_id, outcome),
    ).fetchone()
    if values is None:
        return None
    row = dict(zip((*_FIELDS, "hash"), values, strict=True))
    row["detail"] = json.loads(row["detail"]) if row["detail"] else None
    return AuditEntry(**row)


def record_read(
    db: sqlite_utils.Database,
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
) -> int:
    """Append the audit row of a read, committed before this returns: in the caller's
    transaction if one is open, otherwise together with the rows of concurrent reads
    (:mod:`appliance.audit.group_commit`)."""
    fields: dict[str, Any] = {
        "object_type": object_type, "object_id": object_id, "outcome": outcome, "detail": detail
    }  # fmt: skip
    found = database_file(db)
    if db.conn.in_transaction or found is None:
        with transaction(db):
            return record(db, actor, action, **fields)
    path, timeout_s = found
    return group_commit.writer_for(path, timeout_s, record).submit(actor, action, **fields)


def audited_read(
    db: sqlite_utils.Database,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str,
    read: Callable[[], T],
    detail: Callable[[T], dict[str, Any] | None] = lambda _: None,
) -> T:
    """Run ``read`` in one read snapshot, then commit its audit row before anything is
    returned; a miss (NotFound) is audited as ``not_found`` and raised after its row is
    committed. The read takes no write lock: only the audit row's short transaction does."""
    error: NotFound | None = None
    result: T | None = None
    with snapshot(db):
        try:
            result = read()
        except NotFound as exc:
            error = exc
    record_read(
        db,
        actor,
        action,
        object_type=object_type,
        object_id=object_id,
        outcome="not_found" if error else "success",
        detail=detail(result) if result is not None else None,
    )
    if error is not None:
        raise error
    assert result is not None
    return result


def recorder(db: sqlite_utils.Database, actor: Actor, object_type: str) -> Callable[..., None]:
    """:func:`record` bound to a database, an actor and an object type: what a lower package
    (model installation in ``ai``) is given to audit its actions without importing this one."""

    def _record(
        action: str,
        *,
        object_id: str | None,
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
    ) -> None:
        record(
            db, actor, action, object_type=object_type, object_id=object_id, outcome=outcome,
            detail=detail,
        )  # fmt: skip

    return _record
