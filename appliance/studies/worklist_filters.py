"""The worklist's filters as SQL conditions on ``studies s``, so that the total counts what a
page shows whatever the paging.

One closed set of ``status`` values (an unknown one is refused by the API with 422):

- the study's own status: ``receiving``, ``stable`` (no new image for the stability delay);
- the chips: ``volume_ready`` (a volume built), ``analyzing`` (the newest analysis queued or
  running), ``synced`` (every instance replicated);
- the report workflow, in this order, each study in exactly one of the last three or signed:
  ``unreported`` (no signed report: final or amended), ``draft_ready`` (an unsigned draft built
  from a finished analysis, not handed over), ``handed_over`` (an unsigned draft handed over to a
  radiologist: a successful ``report.handover`` audit row on it), ``signed`` (a final or amended
  report).

``today`` compares the DICOM StudyDate (DA, PS3.5 6.2: the acquisition site's local date) with
the site's local date; ``arrived_today`` compares the arrival time (stored in UTC) with the
site's local day, as a UTC range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from appliance.db.rows import iso

SIGNED_SQL = (
    "EXISTS (SELECT 1 FROM reports r WHERE r.study_id = s.id"
    " AND r.status IN ('final', 'amended'))"
)
UNREPORTED_SQL = f"NOT {SIGNED_SQL}"
_HANDED_OVER = (
    "EXISTS (SELECT 1 FROM reports r JOIN audit_log l ON l.object_type = 'report'"
    " AND l.object_id = r.id AND l.action = 'report.handover' AND l.outcome = 'success'"
    " WHERE r.study_id = s.id AND r.status = 'draft')"
)
_AI_DRAFT = (
    "EXISTS (SELECT 1 FROM reports r JOIN analyses a ON a.id = r.analysis_id"
    " WHERE r.study_id = s.id AND r.status = 'draft'"
    " AND a.status IN ('completed', 'needs_review'))"
)
_NEWEST_ANALYSIS = (
    "(SELECT a.status FROM analyses a WHERE a.study_id = s.id"
    " ORDER BY a.created_at DESC, a.id DESC LIMIT 1)"
)
_SYNCED = (
    "(SELECT COUNT(*) > 0 AND COUNT(*) = SUM(q.status IS 'done') FROM instances i"
    " JOIN series se ON se.id = i.series_id"
    " LEFT JOIN sync_queue q ON q.object_key = 'objects/' || i.storage_key"
    " WHERE se.study_id = s.id)"
)

#: Each ``status`` value and its condition.
STATUS_SQL: dict[str, str] = {
    "receiving": "s.status = 'receiving'",
    "stable": "s.status = 'stable'",
    "volume_ready": "EXISTS (SELECT 1 FROM volumes v JOIN series se ON se.id = v.series_id"
    " WHERE v.status = 'ready' AND se.study_id = s.id)",
    "analyzing": f"{_NEWEST_ANALYSIS} IN ('queued', 'running')",
    "unreported": UNREPORTED_SQL,
    "draft_ready": f"{UNREPORTED_SQL} AND NOT {_HANDED_OVER} AND {_AI_DRAFT}",
    "handed_over": f"{UNREPORTED_SQL} AND {_HANDED_OVER}",
    "signed": SIGNED_SQL,
    "synced": _SYNCED,
}


@dataclass(frozen=True)
class SiteDay:
    """The site's local day: its DICOM DA and its bounds in UTC (ISO, as rows store times)."""

    study_date: str
    start: str
    end: str


def site_day(zone: str, now: datetime | None = None) -> SiteDay:
    """Today in the site's IANA time zone ``zone`` (``now``: this moment, for tests)."""
    tz = ZoneInfo(zone)
    local: date = (now or datetime.now(UTC)).astimezone(tz).date()
    start = datetime.combine(local, time(0), tzinfo=tz)
    end = datetime.combine(local + timedelta(days=1), time(0), tzinfo=tz)
    return SiteDay(local.strftime("%Y%m%d"), iso(start), iso(end))


def day_conditions(
    day: SiteDay, *, today: bool, arrived_today: bool
) -> tuple[list[str], list[str]]:
    """The conditions (and their parameters) of the ``today`` and ``arrived_today`` filters."""
    where: list[str] = []
    params: list[str] = []
    if today:
        where.append("s.study_date = ?")
        params.append(day.study_date)
    if arrived_today:
        where.append("s.created_at >= ? AND s.created_at < ?")
        params.extend([day.start, day.end])
    return where, params
