"""Series and studies become ``stable`` after a quiet period without new instances (like
Orthanc's StableAge); stability is what triggers volume building and analysis."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import ConnectionPool, transaction
from appliance.db.rows import iso, utc_now
from appliance.logs import get_logger

log = get_logger("radiant.stability")
ACTOR = Actor.system("stability")


@dataclass(frozen=True)
class Stable:
    kind: str  # "series" | "study"
    id: str


def mark_stable(db: sqlite_utils.Database, stable_age_s: float) -> list[Stable]:
    """Mark receiving series and studies quiet for ``stable_age_s`` as stable; returns them.

    A study becomes stable only once all of its series are.
    """
    now = utc_now()
    cutoff = iso(now - timedelta(seconds=stable_age_s))
    stamp = iso(now)
    found: list[Stable] = []
    with transaction(db):
        series = [
            r[0]
            for r in db.execute(
                "SELECT id FROM series WHERE status = 'receiving' AND last_instance_at <= ?",
                (cutoff,),
            ).fetchall()
        ]
        for series_id in series:
            db.execute(
                "UPDATE series SET status = 'stable', stable_at = ?, updated_at = ? WHERE id = ?",
                (stamp, stamp, series_id),
            )
            audit.record(db, ACTOR, "series.stable", object_type="series", object_id=series_id)
            found.append(Stable("series", series_id))
        studies = [
            r[0]
            for r in db.execute(
                "SELECT id FROM studies s WHERE status = 'receiving' AND last_instance_at <= ?"
                " AND NOT EXISTS (SELECT 1 FROM series WHERE study_id = s.id"
                " AND status = 'receiving')",
                (cutoff,),
            ).fetchall()
        ]
        for study_id in studies:
            db.execute(
                "UPDATE studies SET status = 'stable', stable_at = ?, updated_at = ? WHERE id = ?",
                (stamp, stamp, study_id),
            )
            audit.record(db, ACTOR, "study.stable", object_type="study", object_id=study_id)
            found.append(Stable("study", study_id))
    return found


class StabilityMonitor:
    """A thread that marks stability every ``interval_s`` and tells the listeners."""

    def __init__(
        self,
        pool: ConnectionPool,
        stable_age_s: float,
        interval_s: float | None = None,
    ) -> None:
        self.pool = pool
        self.stable_age_s = stable_age_s
        self.interval_s = interval_s or max(0.5, min(5.0, stable_age_s / 4))
        self.listeners: list[Callable[[Stable], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stability", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                for event in mark_stable(self.pool.get(), self.stable_age_s):
                    for listener in self.listeners:
                        listener(event)
            except Exception:
                log.exception("stability_check_failed")
