"""The worklist projection: a read model for the worklist screen and API.

It is the one place that reads across domains on purpose: studies and patients (the list and its
search), the urgency of the AI analyses (through :mod:`appliance.triage.service`), and, for each
study's status chips, the ``volumes``, ``analyses``, ``jobs`` (the analysis job's progress),
``reports`` and ``sync_queue`` tables (replicated objects are keyed ``objects/<storage key>``)
and the ``report.handover`` audit rows; the filters' conditions are in
:mod:`~appliance.studies.worklist_filters`. It only reads; each domain's service owns its
writes. The list read is audited (``study.list``); the states and the fingerprint carry no
patient data and are not.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import snapshot
from appliance.db.rows import escape_like
from appliance.patients.service import fold
from appliance.studies.models import (
    StudyListItem,
    StudyPage,
    StudyState,
    WorklistSort,
    WorklistStatus,
)
from appliance.studies.rows import (
    PATIENT_COLUMNS,
    STUDY_COLUMNS,
    patient_summary,
    select_rows,
    study_fields,
)
from appliance.studies.worklist_filters import (
    STATUS_SQL,
    UNREPORTED_SQL,
    SiteDay,
    day_conditions,
    site_day,
)
from appliance.triage.service import STUDY_RANKS_TABLE_SQL, study_urgencies


def _like(word: str) -> str:
    return f"%{escape_like(word)}%"


URGENCY_LEVELS: tuple[Literal["routine"], Literal["urgent"], Literal["critical"]] = (
    "routine",
    "urgent",
    "critical",
)
_UNREPORTED = UNREPORTED_SQL
#: ``u``: the non-routine ranks (:data:`~appliance.triage.service.STUDY_RANKS_TABLE_SQL`);
#: whether a ranked study is reported is asked of those few only.
_WORKLIST_ORDER: dict[str, str] = {
    "urgency": f"(CASE WHEN u.rank IS NOT NULL AND {_UNREPORTED} THEN u.rank ELSE 0 END) DESC,"
    " s.created_at DESC, s.id",
    "arrival": "s.created_at DESC, s.id",
    "study_date": "s.study_date IS NULL, s.study_date DESC, s.created_at DESC, s.id",
    "status": "s.status, s.created_at DESC, s.id",
}


def worklist(
    db: sqlite_utils.Database,
    actor: Actor,
    *,
    status: WorklistStatus | None = None,
    modality: str | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
    sort: WorklistSort = "urgency",
    urgent: bool = False,
    today: bool = False,
    arrived_today: bool = False,
    day: SiteDay | None = None,
) -> StudyPage:
    """Studies with their patient; filters combine with AND, the total counts them all.

    ``sort``: ``urgency`` (default: unreported critical, then unreported urgent studies first,
    then newest arrival first), ``arrival``, ``study_date`` (newest first, undated last) or
    ``status``. ``status``: one of :data:`~appliance.studies.worklist_filters.STATUS_SQL`.
    ``urgent`` keeps studies whose AI urgency (not cleared by a radiologist) is urgent or
    critical. ``today`` keeps studies whose StudyDate is the site's ``day`` (UTC when not
    given), ``arrived_today`` those that arrived that day. ``modality`` matches one of the
    study's modalities exactly; ``search`` matches every word against the patient's MRN and
    names, case- and accent-insensitively.
    """
    where: list[str] = []
    params: list[Any] = []
    if urgent:
        where.append("u.rank IS NOT NULL")
    if status:
        where.append(f"({STATUS_SQL[status]})")
    days, day_params = day_conditions(
        day or site_day("UTC"), today=today, arrived_today=arrived_today
    )
    where.extend(days)
    params.extend(day_params)
    if modality:
        where.append("instr('\\' || COALESCE(s.modalities, '') || '\\', ?) > 0")
        params.append(f"\\{modality.upper()}\\")
    words = fold(search or "").split()
    if words:
        # the patients that match, first: a study's patient is found by its index, instead
        # of testing the words on the patient row of every study in the walk
        matching = " AND ".join("search_key LIKE ? ESCAPE '\\'" for _ in words)
        where.append(f"s.patient_id IN (SELECT id FROM patients WHERE {matching})")  # noqa: S608
        params.extend(_like(word) for word in words)
    clause = _where_sql(where)
    joined = (
        "FROM studies s JOIN patients p ON p.id = s.patient_id"
        f" LEFT JOIN {STUDY_RANKS_TABLE_SQL} u ON u.study_id = s.id"
    )
    with snapshot(db):
        # no condition reads the patient row, and every study has one (NOT NULL, foreign
        # key); only the urgent filter asks for the ranks
        counted = (
            f"FROM studies s LEFT JOIN {STUDY_RANKS_TABLE_SQL} u ON u.study_id = s.id"
            if urgent
            else "FROM studies s"
        )
        total = db.execute(f"SELECT COUNT(*) {counted} {clause}", params).fetchone()[0]
        ids = _page_ids(db, joined, where, params, sort, limit, offset)
        found = select_rows(
            db,
            f"SELECT {STUDY_COLUMNS}, {PATIENT_COLUMNS}, COALESCE(u.rank, 0) AS urgency_rank"
            f" {joined} WHERE s.id IN ({', '.join('?' for _ in ids)})",
            ids,
        )
    by_id = {r["id"]: r for r in found}
    rows = [by_id[i] for i in ids if i in by_id]
    audit.record_read(
        db,
        actor,
        "study.list",
        object_type="study",
        detail={
            "returned": [r["id"] for r in rows],
            "total": total,
            "filtered": bool(status or modality or urgent or today or arrived_today),
            "searched": bool(words),
        },
    )
    items = [
        StudyListItem(
            **study_fields(r), patient=patient_summary(r), urgency=URGENCY_LEVELS[r["urgency_rank"]]
        )
        for r in rows
    ]
    return StudyPage(items=items, total=total, limit=limit, offset=offset)


def _where_sql(conditions: list[str]) -> str:
    """``WHERE`` with the conditions joined by AND; empty when there are none."""
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def _page_ids(
    db: sqlite_utils.Database,
    joined: str,
    where: list[str],
    params: list[Any],
    sort: WorklistSort,
    limit: int,
    offset: int,
) -> list[str]:
    """The ids of one page in ``sort`` order (narrow rows; the page is read in full after).

    The urgency order is read in two parts instead of sorting every study on a computed key:
    the unreported ranked studies (few: those the AI flagged) in rank order, then the rest
    by arrival, which walks the arrival index and stops at the page. The pages are the same
    as the single ORDER BY of :data:`_WORKLIST_ORDER`."""
    if sort != "urgency":
        return [
            r[0]
            for r in db.execute(
                f"SELECT s.id {joined} {_where_sql(where)}"
                f" ORDER BY {_WORKLIST_ORDER[sort]} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        ]
    first = f"u.rank IS NOT NULL AND {_UNREPORTED}"
    # CROSS JOIN keeps the ranks as the outer loop (SQLite does not reorder it): the ranked
    # studies are few, and walking every study to find them cost a scan per page
    by_rank = (
        f"FROM {STUDY_RANKS_TABLE_SQL} u CROSS JOIN studies s ON s.id = u.study_id"
        " JOIN patients p ON p.id = s.patient_id"
    )
    ranked = [
        r[0]
        for r in db.execute(
            f"SELECT s.id {by_rank} {_where_sql([*where, first])}"
            " ORDER BY u.rank DESC, s.created_at DESC, s.id",
            params,
        )
    ]
    page = ranked[offset : offset + limit]
    if len(page) < limit:
        rest = _where_sql([*where, f"NOT ({first})"])
        page += [
            r[0]
            for r in db.execute(
                f"SELECT s.id {joined} {rest} ORDER BY s.created_at DESC, s.id LIMIT ? OFFSET ?",
                [*params, limit - len(page), max(0, offset - len(ranked))],
            )
        ]
    return page


def worklist_states(db: sqlite_utils.Database, study_ids: list[str]) -> dict[str, StudyState]:
    """Volume, analysis, report and replication state of each study (no patient data, so not
    audited; the worklist read that names the studies is)."""
    states = {study_id: StudyState(study_id=study_id) for study_id in study_ids}
    if not study_ids:
        return states
    marks = ", ".join("?" for _ in study_ids)
    for row in select_rows(
        db,
        f"SELECT DISTINCT s.study_id FROM volumes v JOIN series s ON s.id = v.series_id"  # noqa: S608
        f" WHERE v.status = 'ready' AND s.study_id IN ({marks})",
        study_ids,
    ):
        states[row["study_id"]].volume_ready = True
    for row in select_rows(
        db,
        f"SELECT a.study_id, a.status, (SELECT j.progress FROM jobs j WHERE j.kind = 'analysis'"  # noqa: S608
        " AND json_extract(j.payload, '$.analysis_id') = a.id ORDER BY j.created_at DESC"
        f" LIMIT 1) AS progress FROM analyses a WHERE a.study_id IN ({marks})"
        " ORDER BY a.created_at",
        study_ids,
    ):
        state = states[row["study_id"]]
        state.analysis_status = row["status"]
        running = row["status"] in ("queued", "running")
        state.analysis_progress = float(row["progress"] or 0) if running else None
    for row in select_rows(
        db,
        f"SELECT study_id, status FROM reports WHERE study_id IN ({marks})"  # noqa: S608
        " ORDER BY updated_at",
        study_ids,
    ):
        states[row["study_id"]].report_status = row["status"]
    for flag in ("handed_over", "draft_ready"):  # the filters' own conditions
        for row in select_rows(
            db,
            f"SELECT s.id AS study_id FROM studies s WHERE s.id IN ({marks})"  # noqa: S608
            f" AND {STATUS_SQL[flag]}",
            study_ids,
        ):
            state = states[row["study_id"]]
            if flag == "handed_over":
                state.handed_over = True
            else:
                state.ai_draft = True
    for row in select_rows(
        db,
        "SELECT s.study_id, COUNT(*) AS total, SUM(CASE WHEN q.status = 'done' THEN 1 ELSE 0"  # noqa: S608
        " END) AS done FROM instances i JOIN series s ON s.id = i.series_id"
        " LEFT JOIN sync_queue q ON q.object_key = 'objects/' || i.storage_key"
        f" WHERE s.study_id IN ({marks}) GROUP BY s.study_id",
        study_ids,
    ):
        states[row["study_id"]].synced = bool(row["total"]) and row["done"] == row["total"]
    for study_id, urgency in study_urgencies(db, study_ids).items():
        states[study_id].urgency = urgency.level
        states[study_id].urgency_confirmed = urgency.review == "confirmed"
    return states


def worklist_fingerprint(db: sqlite_utils.Database) -> str:
    """Changes whenever a study arrives or changes (for a screen that refreshes itself)."""
    row = db.execute(
        "SELECT COUNT(*), MAX(updated_at), (SELECT MAX(updated_at) FROM reports),"
        " (SELECT MAX(COALESCE(urgency_reviewed_at, completed_at, started_at, created_at))"
        " FROM analyses),"
        " (SELECT TOTAL(progress) FROM jobs WHERE status IN ('queued', 'running')),"
        " (SELECT COUNT(*) FROM volumes WHERE status = 'ready'),"
        " (SELECT COUNT(*) FROM sync_queue WHERE status = 'done'),"
        " (SELECT MAX(id) FROM audit_log WHERE action = 'report.handover') FROM studies"
    ).fetchone()
    return "|".join(str(value) for value in row)
