"""Turnaround times: a read model over studies, analyses, report hand-overs and signatures.

It owns no table. Per study, the moments the clinic cares about: arrival (first instance
stored), complete (series stable), analysed (first finished analysis), handed over (first
``report.handover`` in the audit log) and signed (first signature); per day, the median minutes
from arrival to each later step among that day's arrivals. Ids and times only, no patient data,
so reading it is not audited.
"""

from __future__ import annotations

import statistics
from datetime import date, datetime, timedelta

import sqlite_utils

from appliance.db.rows import fetch_one, utc_now
from appliance.errors import NotFound
from appliance.triage.models import DayTurnaround, StudyTurnaround

STEPS = ("complete", "analysed", "handed_over", "signed")
#: Longest window the per-day medians cover.
MAX_DAYS = 90

_MOMENTS = """
SELECT s.id AS study_id, s.created_at AS arrival, s.stable_at AS complete,
  (SELECT MIN(a.completed_at) FROM analyses a WHERE a.study_id = s.id
     AND a.status IN ('completed', 'needs_review')) AS analysed,
  (SELECT MIN(l.ts) FROM audit_log l JOIN reports r ON r.id = l.object_id
     WHERE l.object_type = 'report' AND r.study_id = s.id AND l.action = 'report.handover'
     AND l.outcome = 'success')
     AS handed_over,
  (SELECT MIN(r.signed_at) FROM reports r WHERE r.study_id = s.id) AS signed
FROM studies s
"""


def _parse(moment: str | None) -> datetime | None:
    return datetime.fromisoformat(moment) if moment else None


def _minutes(start: str | None, end: str | None) -> float | None:
    begin, finish = _parse(start), _parse(end)
    if begin is None or finish is None:
        return None
    return round(max(0.0, (finish - begin).total_seconds()) / 60.0, 1)


def study_turnaround(db: sqlite_utils.Database, study_id: str) -> StudyTurnaround:
    """The moments of one study and the minutes from its arrival to each."""
    row = fetch_one(db, _MOMENTS + " WHERE s.id = ?", (study_id,))
    if row is None:
        raise NotFound(f"study {study_id} not found")
    return StudyTurnaround(
        **row,
        minutes={step: _minutes(row["arrival"], row[step]) for step in STEPS},
    )


def daily(db: sqlite_utils.Database, days: int, today: date | None = None) -> list[DayTurnaround]:
    """The last ``days`` days (oldest first), by arrival day in UTC: arrivals, how many were
    signed, and the median minutes from arrival to each step among those that reached it."""
    days = max(1, min(MAX_DAYS, days))
    last = today or utc_now().date()
    first = last - timedelta(days=days - 1)
    cursor = db.execute(
        _MOMENTS + " WHERE s.created_at >= ? AND s.created_at < ? ORDER BY s.created_at",
        (first.isoformat(), (last + timedelta(days=1)).isoformat()),
    )
    names = [c[0] for c in cursor.description]
    by_day: dict[str, list[dict[str, str | None]]] = {
        (first + timedelta(days=n)).isoformat(): [] for n in range(days)
    }
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        by_day[str(row["arrival"])[:10]].append(row)
    out: list[DayTurnaround] = []
    for day, rows in by_day.items():
        medians: dict[str, float | None] = {}
        for step in STEPS:
            spans = [m for r in rows if (m := _minutes(r["arrival"], r[step])) is not None]
            medians[step] = round(statistics.median(spans), 1) if spans else None
        out.append(
            DayTurnaround(
                day=day,
                arrived=len(rows),
                signed=sum(1 for r in rows if r["signed"]),
                median_minutes=medians,
            )
        )
    return out
