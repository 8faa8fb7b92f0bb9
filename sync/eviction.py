"""Local disk: when free space falls below ``RADIANT_EVICT_FREE_GB``, remove the DICOM files of
studies that are done with on this box, oldest first, until there is room again.

A study qualifies when it has a signed report (``final`` or ``amended``), every one of its
instances is verified in the bucket (its ``sync_queue`` row is ``done``) and it is older than
``RADIANT_RETENTION_DAYS`` (its last instance arrived before then). The index rows stay, marked
``storage_state = 'remote'``: the row is switched first and the file removed after, so a crash
in between leaves a redundant file, never a row without its file. Opening such an instance
fetches it back from the bucket (:mod:`sync.fetch`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.connection import transaction
from appliance.logs import get_logger
from sync import layout
from sync.queue import since

log = get_logger("radiant.sync.eviction")
ACTOR = Actor.system("sync")
SIGNED = ("final", "amended")


@dataclass
class EvictionReport:
    studies: int = 0
    files: int = 0
    bytes: int = 0


def candidates(db: sqlite_utils.Database, retention_days: float) -> list[str]:
    """Ids of the studies that may be evicted, oldest first."""
    rows = db.execute(
        "SELECT s.id FROM studies s"
        " WHERE COALESCE(s.last_instance_at, s.created_at) < ?"
        "   AND EXISTS (SELECT 1 FROM reports r WHERE r.study_id = s.id"
        "               AND r.status IN (?, ?))"
        "   AND EXISTS (SELECT 1 FROM series se JOIN instances i ON i.series_id = se.id"
        "               WHERE se.study_id = s.id AND i.storage_state = 'local')"
        "   AND NOT EXISTS (SELECT 1 FROM series se JOIN instances i ON i.series_id = se.id"
        "               LEFT JOIN sync_queue q ON q.object_key = ? || i.storage_key"
        "               WHERE se.study_id = s.id AND i.storage_state = 'local'"
        "               AND (q.status IS NULL OR q.status <> 'done'))"
        " ORDER BY COALESCE(s.last_instance_at, s.created_at), s.id",
        (since(retention_days), *SIGNED, layout.OBJECTS + "/"),
    ).fetchall()
    return [str(r[0]) for r in rows]


def evict_study(ctx: AppContext, study_id: str, actor: Actor = ACTOR) -> EvictionReport:
    """Evict the local, verified DICOM files of one study (see the module docstring)."""
    db = ctx.pool.get()
    report = EvictionReport()
    with transaction(db):
        rows = db.execute(
            "SELECT i.id, i.storage_key, i.size FROM instances i"
            " JOIN series se ON se.id = i.series_id"
            " JOIN sync_queue q ON q.object_key = ? || i.storage_key AND q.status = 'done'"
            " WHERE se.study_id = ? AND i.storage_state = 'local'",
            (layout.OBJECTS + "/", study_id),
        ).fetchall()
        db.conn.executemany(
            "UPDATE instances SET storage_state = 'remote'"
            " WHERE id = ? AND storage_state = 'local'",
            [(r[0],) for r in rows],
        )
        if rows:
            audit.record(
                db,
                actor,
                "sync.evict",
                object_type="study",
                object_id=study_id,
                detail={"instances": len(rows), "bytes": sum(int(r[2]) for r in rows)},
            )
    for _id, key, size in rows:
        ctx.store.delete(str(key), missing_ok=True)
        report.files += 1
        report.bytes += int(size)
    report.studies = 1 if rows else 0
    return report


def evict_if_needed(
    ctx: AppContext, *, free_bytes: Callable[[], int] | None = None
) -> EvictionReport:
    """Evict qualifying studies, oldest first, while free space is under the threshold."""
    settings = ctx.settings
    threshold = int(settings.evict_free_gb * 1e9)
    free = free_bytes or ctx.store.free_bytes
    total = EvictionReport()
    if free() >= threshold:
        return total
    for study_id in candidates(ctx.pool.get(), settings.retention_days):
        if free() >= threshold:
            break
        done = evict_study(ctx, study_id)
        total.studies += done.studies
        total.files += done.files
        total.bytes += done.bytes
    if total.studies:
        log.info("evicted", studies=total.studies, files=total.files, bytes=total.bytes)
    return total
