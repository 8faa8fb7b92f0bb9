"""The ``sync_queue`` table: one row per file that must reach the bucket.

Rows are written by triggers in the same transaction as the index row that makes a file
durable (``instances``, ``volumes``, ``quarantine``; migration 0004), so an acknowledged object
always has its row and a crash can never leave one without the other. :func:`reconcile` is the
safety net for files of other producers: it walks the object store and the quarantine and
enqueues any file without a row.

Life of a row: ``pending`` -> ``uploading`` (claimed by the worker) -> ``done`` once the remote
copy was verified (size and hash), or ``failed`` (retried after a growing pause, never dropped).
A row whose file is gone and no longer referenced (replaced by an overwrite or a rebuilt
volume) is removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlite_utils

from appliance.config import Settings
from appliance.db.connection import transaction
from appliance.db.rows import iso, now_iso, utc_now
from sync import layout

RECONCILE_MIN_AGE_S = 60.0  # younger files may belong to an ingest in flight
# The table is shared (PACS sends of report exports are queued in it too, object_type
# 'pacs_send'): this worker only touches rows of files under the data dir.
# Every query below repeats this condition: object_key LIKE 'objects/%' OR 'quarantine/%',
# object_type <> 'pacs_send'.


@dataclass(frozen=True)
class QueueItem:
    id: int
    object_type: str
    object_key: str
    size: int | None
    sha256: str | None
    attempts: int


@dataclass(frozen=True)
class QueueCounts:
    pending: int = 0
    pending_bytes: int = 0
    uploading: int = 0
    uploading_bytes: int = 0
    failed: int = 0
    failed_bytes: int = 0
    done: int = 0
    done_bytes: int = 0
    last_error: str | None = None

    @property
    def outstanding(self) -> int:
        return self.pending + self.uploading + self.failed


def reset_in_flight(db: sqlite_utils.Database) -> int:
    """Rows left ``uploading`` by a crash or a stop go back to ``pending``."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE sync_queue SET status = 'pending', updated_at = ? WHERE status = 'uploading'"
            " AND (object_key LIKE 'objects/%' OR object_key LIKE 'quarantine/%')"
            " AND object_type <> 'pacs_send'",
            (now_iso(),),
        )
    return int(cursor.rowcount or 0)


def retry_pause_s(attempts: int, base_s: float) -> float:
    """Pause before a failed row is tried again: base * 2^(attempts-1), at most an hour."""
    return float(min(base_s * 2 ** max(attempts - 1, 0), 3600.0))


def claim(
    db: sqlite_utils.Database,
    *,
    limit: int,
    max_bytes: int,
    retry_base_s: float,
) -> list[QueueItem]:
    """Mark up to ``limit`` rows (and about ``max_bytes``) ``uploading`` and return them:
    pending rows oldest first, then failed rows whose pause is over."""
    with transaction(db):
        rows = db.execute(
            "SELECT id, object_type, object_key, size, sha256, attempts, status, updated_at"
            " FROM sync_queue WHERE status IN ('pending', 'failed')"
            " AND (object_key LIKE 'objects/%' OR object_key LIKE 'quarantine/%')"
            " AND object_type <> 'pacs_send'"
            " ORDER BY status = 'failed', id LIMIT ?",
            (limit * 4,),
        ).fetchall()
        now = time.time()
        chosen: list[QueueItem] = []
        total = 0
        for row in rows:
            if row[6] == "failed" and _age_s(str(row[7]), now) < retry_pause_s(
                int(row[5]), retry_base_s
            ):
                continue
            size = int(row[3] or 0)
            if chosen and total + size > max_bytes:
                break
            chosen.append(QueueItem(int(row[0]), str(row[1]), str(row[2]), row[3], row[4], row[5]))
            total += size
            if len(chosen) >= limit:
                break
        stamp = now_iso()
        db.conn.executemany(
            "UPDATE sync_queue SET status = 'uploading', updated_at = ? WHERE id = ?",
            [(stamp, item.id) for item in chosen],
        )
    return chosen


def _age_s(stamp: str, now: float) -> float:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return now - moment.timestamp()


def mark_done(db: sqlite_utils.Database, items: list[QueueItem]) -> int:
    """Verified in the bucket. A row changed meanwhile (a new version of the file was
    enqueued by a trigger) stays as the trigger left it."""
    stamp = now_iso()
    with transaction(db):
        count = 0
        for item in items:
            cursor = db.execute(
                "UPDATE sync_queue SET status = 'done', done_at = ?, updated_at = ?,"
                " last_error = NULL WHERE id = ? AND status = 'uploading' AND sha256 IS ?",
                (stamp, stamp, item.id, item.sha256),
            )
            count += int(cursor.rowcount or 0)
    return count


def mark_failed(db: sqlite_utils.Database, items: list[QueueItem], error: str) -> None:
    stamp = now_iso()
    with transaction(db):
        db.conn.executemany(
            "UPDATE sync_queue SET status = 'failed', attempts = attempts + 1, last_error = ?,"
            " updated_at = ? WHERE id = ? AND status = 'uploading'",
            [(error[:500], stamp, item.id) for item in items],
        )


def release(db: sqlite_utils.Database, items: list[QueueItem]) -> None:
    """Back to ``pending`` without counting an attempt (the bucket went away meanwhile)."""
    stamp = now_iso()
    with transaction(db):
        db.conn.executemany(
            "UPDATE sync_queue SET status = 'pending', updated_at = ?"
            " WHERE id = ? AND status = 'uploading'",
            [(stamp, item.id) for item in items],
        )


def forget(db: sqlite_utils.Database, items: list[QueueItem]) -> None:
    """Remove rows of files that were replaced and are no longer referenced."""
    with transaction(db):
        db.conn.executemany(
            "DELETE FROM sync_queue WHERE id = ? AND status = 'uploading'",
            [(item.id,) for item in items],
        )


def counts(db: sqlite_utils.Database) -> QueueCounts:
    """Rows and bytes per status, and the newest failure's error."""
    values: dict[str, int] = {}
    for status, number, size in db.execute(
        "SELECT status, COUNT(*), COALESCE(SUM(size), 0) FROM sync_queue"
        " WHERE (object_key LIKE 'objects/%' OR object_key LIKE 'quarantine/%')"
        " AND object_type <> 'pacs_send' GROUP BY status"
    ):
        values[str(status)] = int(number)
        values[f"{status}_bytes"] = int(size)
    row = db.execute(
        "SELECT last_error FROM sync_queue WHERE status = 'failed' AND last_error IS NOT NULL"
        " AND (object_key LIKE 'objects/%' OR object_key LIKE 'quarantine/%')"
        " AND object_type <> 'pacs_send'"
        " ORDER BY updated_at DESC LIMIT 1"
    ).fetchone()
    return QueueCounts(**values, last_error=str(row[0]) if row else None)


def enqueue(
    db: sqlite_utils.Database, key: str, object_type: str, size: int | None, sha256: str | None
) -> bool:
    """Add a row for ``key`` unless it has one; True when added."""
    stamp = now_iso()
    cursor = db.execute(
        "INSERT OR IGNORE INTO sync_queue (object_type, object_key, size, sha256, status,"
        " attempts, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
        (object_type, key, size, sha256, stamp, stamp),
    )
    return bool(cursor.rowcount)


def reconcile(settings: Settings, db: sqlite_utils.Database) -> int:
    """Enqueue every file of the object store and the quarantine that has no row (older than a
    minute: younger ones may be an ingest in flight); returns how many were added."""
    cutoff = time.time() - RECONCILE_MIN_AGE_S
    known = {str(r[0]) for r in db.execute("SELECT object_key FROM sync_queue")}
    found: list[tuple[str, str, int]] = []
    for folder in (layout.OBJECTS, layout.QUARANTINE):
        root = settings.data_dir / folder
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue
                path = Path(dirpath, name)
                key = path.relative_to(settings.data_dir).as_posix()
                if key in known:
                    continue
                try:
                    info = path.stat()
                except OSError:
                    continue
                if info.st_mtime > cutoff:
                    continue
                parts = key.split("/")
                kind = "quarantine" if parts[0] == layout.QUARANTINE else parts[1]
                found.append((key, kind, info.st_size))
    added = 0
    with transaction(db):
        for key, kind, size in found:
            added += enqueue(db, key, kind, size, None)
    return added


def since(days: float) -> str:
    """ISO time ``days`` ago (for age comparisons in SQL)."""
    return iso(utc_now() - timedelta(days=days))
