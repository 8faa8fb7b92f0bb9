"""Reading analyses back: one with its findings and measurements, a study's list (both
audited) and the bare status a screen polls.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from appliance.analysis.failures import failure_kind
from appliance.analysis.job import reconcile
from appliance.analysis.models import (
    AnalysisOut,
    FindingOut,
    MeasurementOut,
)
from appliance.analysis.store import rows
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.errors import NotFound
from appliance.studies import service as studies


def analysis_out(db: sqlite_utils.Database, row: dict[str, Any]) -> AnalysisOut:
    """An analysis row with its findings and their measurements, as the API returns it."""
    findings = []
    for item in rows(
        db, "SELECT * FROM findings WHERE analysis_id = ? ORDER BY created_at, rowid", (row["id"],)
    ):
        measures = rows(
            db,
            "SELECT id, name, value, unit FROM measurements WHERE finding_id = ?"
            " ORDER BY created_at, rowid",
            (item["id"],),
        )
        findings.append(
            FindingOut(
                id=item["id"],
                series_id=item["series_id"],
                instance_id=item["instance_id"],
                slice_index=item["slice_index"],
                location=item["location"],
                description=item["description"],
                impression=item["impression"],
                confidence=float(item["confidence"]),
                box=json.loads(item["box"]) if item["box"] else None,
                flags=json.loads(item["flags"]) if item["flags"] else [],
                review_state=item["review_state"],
                measurements=[MeasurementOut(**m) for m in measures],
            )
        )
    fields = {k: row[k] for k in AnalysisOut.model_fields if k in row and k != "findings"}
    fields["partial"] = bool(row.get("partial"))
    stored = json.loads(row["safety"]) if row.get("safety") else {}
    fields["review_reasons"] = stored.get("review_reasons", [])
    fields["overall_flags"] = stored.get("overall_flags", [])
    fields["repairs"] = stored.get("repairs", [])
    if row["status"] == "failed":
        fields["failure"] = failure_kind(row.get("error"))
    return AnalysisOut(**fields, findings=findings)


def analysis_status(db: sqlite_utils.Database, analysis_id: str) -> str | None:
    """The status alone (queued, running, ...; None if unknown): no patient data and no model
    output, so a screen polls it unaudited and reads the result once, audited."""
    reconcile(db, analysis_id)
    row = db.execute("SELECT status FROM analyses WHERE id = ?", (analysis_id,)).fetchone()
    return str(row[0]) if row else None


def get_analysis(db: sqlite_utils.Database, analysis_id: str, actor: Actor) -> AnalysisOut:
    """One analysis with its findings; audited ``analysis.read``."""
    reconcile(db, analysis_id)
    found = rows(db, "SELECT * FROM analyses WHERE id = ?", (analysis_id,))
    if not found:
        audit.record(
            db,
            actor,
            "analysis.read",
            object_type="analysis",
            object_id=analysis_id,
            outcome="not_found",
        )
        raise NotFound(f"analysis {analysis_id} not found")
    audit.record(db, actor, "analysis.read", object_type="analysis", object_id=analysis_id)
    return analysis_out(db, found[0])


def study_analyses(db: sqlite_utils.Database, study_id: str, actor: Actor) -> list[AnalysisOut]:
    """The analyses of a study, newest first; audited ``analysis.list``."""
    studies.require_study(db, study_id)
    reconcile(db)
    found = [
        analysis_out(db, r)
        for r in rows(
            db, "SELECT * FROM analyses WHERE study_id = ? ORDER BY created_at DESC", (study_id,)
        )
    ]
    audit.record(
        db,
        actor,
        "analysis.list",
        object_type="study",
        object_id=study_id,
        detail={"returned": [a.id for a in found]},
    )
    return found
