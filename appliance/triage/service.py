"""Study urgency (triage) read from the analyses, and its review by a radiologist.

Each finished analysis stores the urgency the safety layer assessed (:mod:`ai.urgency`). A
study's urgency is the highest among its finished analyses that no radiologist has cleared; a
radiologist confirms (``VERIFIED``) or clears it, audited ``analysis.urgency_review``.
"""

from __future__ import annotations

import json

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import fetch_all as _rows
from appliance.db.rows import now_iso
from appliance.errors import Conflict, NotFound
from appliance.triage.models import StudyUrgency, Urgency, UrgencyReview

RANK: dict[str, int] = {"routine": 0, "urgent": 1, "critical": 2}
FINISHED = ("completed", "needs_review")

#: The ranks of the studies that are not routine, as a table to LEFT JOIN on ``study_id``
#: (``rank`` 1 urgent, 2 critical; absent: routine): a study's rank is that of its most urgent
#: finished analysis whose urgency no radiologist cleared. A read model kept by triggers on
#: ``analyses`` in the writing transaction (migration 0014), so that the worklist joins it by
#: key instead of grouping every analysis of the box's life for each statement of each page.
STUDY_RANKS_TABLE_SQL = "study_ranks"


def study_urgencies(db: sqlite_utils.Database, study_ids: list[str]) -> dict[str, StudyUrgency]:
    """The urgency of each study (``routine`` when nothing says otherwise). Ids and levels only,
    no patient data: not audited (the read that names the studies is)."""
    found = {
        sid: StudyUrgency(study_id=sid, level="routine", analysis_id=None) for sid in study_ids
    }
    if not study_ids:
        return found
    marks = ", ".join("?" for _ in study_ids)
    rows = _rows(
        db,
        "SELECT id, study_id, urgency, urgency_detail, urgency_review, urgency_reviewed_by,"  # noqa: S608
        " urgency_reviewed_at, completed_at FROM analyses"
        f" WHERE study_id IN ({marks}) AND status IN ('completed', 'needs_review')"
        " AND urgency IS NOT NULL ORDER BY completed_at, rowid",
        study_ids,
    )
    for row in rows:
        current = found[row["study_id"]]
        if row["urgency_review"] == "cleared":
            current.cleared.append(row["id"])
            continue
        level: Urgency = row["urgency"]
        better = RANK[level] > RANK[current.level] or (
            RANK[level] == RANK[current.level] and level != "routine"
        )
        if current.analysis_id is None or better:
            detail = json.loads(row["urgency_detail"]) if row["urgency_detail"] else None
            confirmed = row["urgency_review"] == "confirmed"
            current.level = level
            current.analysis_id = row["id"]
            current.review = "confirmed" if confirmed else None
            current.reviewed_by = row["urgency_reviewed_by"]
            current.reviewed_at = row["urgency_reviewed_at"]
            current.verification_flag = "VERIFIED" if confirmed else "UNVERIFIED"
            current.detail = detail
            current.reasons = list(detail.get("reasons", [])) if detail else []
    return found


def study_urgency(db: sqlite_utils.Database, study_id: str, actor: Actor) -> StudyUrgency:
    """One study's urgency; audited ``study.urgency_read``."""
    if db.execute("SELECT 1 FROM studies WHERE id = ?", (study_id,)).fetchone() is None:
        raise NotFound(f"study {study_id} not found")
    result = study_urgencies(db, [study_id])[study_id]
    audit.record(
        db,
        actor,
        "study.urgency_read",
        object_type="study",
        object_id=study_id,
        detail={"level": result.level, "analysis_id": result.analysis_id},
    )
    return result


def review(
    db: sqlite_utils.Database, analysis_id: str, body: UrgencyReview, actor: Actor
) -> StudyUrgency:
    """A radiologist confirms or clears an analysis' urgency (``urgent`` or ``critical`` only);
    audited ``analysis.urgency_review``. Returns the study's urgency afterwards."""
    rows = _rows(db, "SELECT study_id, status, urgency FROM analyses WHERE id = ?", (analysis_id,))
    if not rows:
        raise NotFound(f"analysis {analysis_id} not found")
    row = rows[0]
    if row["status"] not in FINISHED or row["urgency"] not in ("urgent", "critical"):
        raise Conflict("only the urgent or critical urgency of a finished analysis is reviewed")
    state = "confirmed" if body.decision == "confirm" else "cleared"
    with transaction(db):
        db.execute(
            "UPDATE analyses SET urgency_review = ?, urgency_reviewed_by = ?,"
            " urgency_reviewed_at = ? WHERE id = ?",
            (state, actor.user_id, now_iso(), analysis_id),
        )
        audit.record(
            db,
            actor,
            "analysis.urgency_review",
            object_type="analysis",
            object_id=analysis_id,
            detail={
                "study_id": row["study_id"],
                "urgency": row["urgency"],
                "decision": state,
            },
        )
    return study_urgencies(db, [row["study_id"]])[row["study_id"]]
