"""Critical alerts: raised when an analysis' urgency is critical, shown on every signed-in screen
until acknowledged by name; acknowledging is audited ``triage.alert_ack``.

An alert holds ids, the study's modalities and times only (no patient data), so listing the
open alerts (which every screen polls) is not audited; opening the study is."""

from __future__ import annotations

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import fetch_all as _rows
from appliance.db.rows import new_id, now_iso
from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.triage import notify
from appliance.triage.models import Alert

SYSTEM = Actor.system("triage")
#: Shortest and longest acknowledging name accepted (a name, not an initial or an essay).
NAME_MIN, NAME_MAX = 2, 120


def raise_for(db: sqlite_utils.Database, analysis_id: str) -> str | None:
    """Raise the alert of a finished analysis whose urgency is critical (once per analysis);
    audited ``triage.alert_raise``; its hospital notification is queued with it. Returns the
    alert id, or None when there is nothing to raise."""
    rows = _rows(
        db,
        "SELECT study_id, urgency, status FROM analyses WHERE id = ?",
        (analysis_id,),
    )
    if not rows or rows[0]["urgency"] != "critical":
        return None
    if rows[0]["status"] not in ("completed", "needs_review"):
        return None
    alert_id = new_id()
    with transaction(db):
        inserted = db.execute(
            "INSERT OR IGNORE INTO triage_alerts (id, study_id, analysis_id, level, raised_at)"
            " VALUES (?, ?, ?, 'critical', ?)",
            (alert_id, rows[0]["study_id"], analysis_id, now_iso()),
        ).rowcount
        if not inserted:
            return None
        audit.record(
            db,
            SYSTEM,
            "triage.alert_raise",
            object_type="alert",
            object_id=alert_id,
            detail={"study_id": rows[0]["study_id"], "analysis_id": analysis_id},
        )
        # Same transaction: no alert without its notification to the hospital (notify.py).
        notify.queue(db, alert_id, rows[0]["study_id"])
    return alert_id


def open_alerts(db: sqlite_utils.Database) -> list[Alert]:
    """Unacknowledged alerts whose urgency no radiologist cleared, oldest first."""
    return [
        Alert(**row)
        for row in _rows(
            db,
            "SELECT t.id, t.study_id, t.analysis_id, t.level, t.raised_at, s.modalities,"
            " s.created_at AS received_at FROM triage_alerts t"
            " JOIN analyses a ON a.id = t.analysis_id JOIN studies s ON s.id = t.study_id"
            " WHERE t.acknowledged_at IS NULL AND a.urgency_review IS NOT 'cleared'"
            " ORDER BY t.raised_at, t.rowid",
        )
    ]


def acknowledge(db: sqlite_utils.Database, alert_id: str, name: str, actor: Actor) -> None:
    """Acknowledge an alert by the name of the person who took it (audited with the signed-in
    account). 422 without a name; 409 when it was already acknowledged."""
    cleaned = " ".join(name.split())
    if not NAME_MIN <= len(cleaned) <= NAME_MAX:
        raise InvalidInput(f"type your name ({NAME_MIN} to {NAME_MAX} characters)")
    rows = _rows(
        db, "SELECT study_id, acknowledged_at FROM triage_alerts WHERE id = ?", (alert_id,)
    )
    if not rows:
        raise NotFound(f"alert {alert_id} not found")
    if rows[0]["acknowledged_at"] is not None:
        raise Conflict("this alert was already acknowledged")
    with transaction(db):
        db.execute(
            "UPDATE triage_alerts SET acknowledged_at = ?, acknowledged_by = ?,"
            " acknowledged_name = ? WHERE id = ? AND acknowledged_at IS NULL",
            (now_iso(), actor.user_id, cleaned, alert_id),
        )
        audit.record(
            db,
            actor,
            "triage.alert_ack",
            object_type="alert",
            object_id=alert_id,
            detail={"study_id": rows[0]["study_id"], "name": cleaned},
        )
