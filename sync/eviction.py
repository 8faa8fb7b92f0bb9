"""Local disk: when free space falls below ``RADIANT_EVICT_FREE_GB``, remove the DICOM files of
studies that are done with on this box, oldest first, until there is room again.

A study qualifies when it has a signed report (``final`` or ``amended``), every one of its
instances is verified in the bucket (its ``sync_queue`` row is ``done``) and it is older than
``RADIANT_RETENTION_DAYS`` (its last instance arrived before then). The index rows stay, marked
``storage_state = 'remote'``: the row is switched first and the file removed after, so a crash
in between leaves a redundant file, never a row without its file. Opening such an instance
fetches it back from the bucket (:func:`appliance.storage.instances.instance_path`, through
:mod:`sync.fetch`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.logs import get_logger
from appliance.storage import instances
from appliance.storage.instances import Evictable
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
    """Evict the local DICOM files of one study that are verified in the bucket (through
    :func:`appliance.storage.instances.evict`, which switches the rows and removes the files)."""
    db = ctx.pool.get()
    rows = db.execute(
        "SELECT i.id, i.storage_key, i.sha256, i.size FROM instances i"
        " JOIN series se ON se.id = i.series_id"
        " JOIN sync_queue q ON q.object_key = ? || i.storage_key AND q.status = 'done'"
        " WHERE se.study_id = ? AND i.storage_state = 'local'",
        (layout.OBJECTS + "/", study_id),
    ).fetchall()
    files = [Evictable(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
    evicted = instances.evict(db, ctx.store, study_id, files, actor)
    return EvictionReport(
        studies=1 if evicted else 0, files=len(evicted), bytes=sum(e.size for e in evicted)
    )


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
