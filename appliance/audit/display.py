"""Audit rows for people: a read model that resolves, at display time, the account's full name
and the patient's MRN of each row's object (a study, series, instance, report, analysis,
volume, alert or notification). The audit rows keep holding ids only; only administrators see
the resolved names, and each page or export that resolves them is itself audited by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlite_utils

from appliance.audit.models import AuditEntry, DisplayEntry

#: object_type -> SQL giving the patient's MRN for ``?`` = the object's id.
_MRN_OF: dict[str, str] = {
    "patient": "SELECT mrn FROM patients WHERE id = ?",
    "study": "SELECT p.mrn FROM studies s JOIN patients p ON p.id = s.patient_id WHERE s.id = ?",
    "series": "SELECT p.mrn FROM series r JOIN studies s ON s.id = r.study_id"
    " JOIN patients p ON p.id = s.patient_id WHERE r.id = ?",
    "instance": "SELECT p.mrn FROM instances i JOIN series r ON r.id = i.series_id"
    " JOIN studies s ON s.id = r.study_id JOIN patients p ON p.id = s.patient_id WHERE i.id = ?",
    "volume": "SELECT p.mrn FROM volumes v JOIN series r ON r.id = v.series_id"
    " JOIN studies s ON s.id = r.study_id JOIN patients p ON p.id = s.patient_id WHERE v.id = ?",
    "report": "SELECT p.mrn FROM reports x JOIN studies s ON s.id = x.study_id"
    " JOIN patients p ON p.id = s.patient_id WHERE x.id = ?",
    "analysis": "SELECT p.mrn FROM analyses x JOIN studies s ON s.id = x.study_id"
    " JOIN patients p ON p.id = s.patient_id WHERE x.id = ?",
    "alert": "SELECT p.mrn FROM triage_alerts x JOIN studies s ON s.id = x.study_id"
    " JOIN patients p ON p.id = s.patient_id WHERE x.id = ?",
    "notification": "SELECT p.mrn FROM triage_notifications x JOIN studies s ON s.id = x.study_id"
    " JOIN patients p ON p.id = s.patient_id WHERE x.id = ?",
}


def resolve(db: sqlite_utils.Database, entries: Iterable[AuditEntry]) -> list[DisplayEntry]:
    """Each entry with ``actor_name`` (the account's full name, if it has one) and ``mrn`` (the
    patient its object belongs to, if any); names looked up once per page."""
    names: dict[str, str | None] = {}
    mrns: dict[tuple[str, str], str | None] = {}
    out: list[DisplayEntry] = []
    for entry in entries:
        if entry.actor not in names:
            row = db.execute(
                "SELECT full_name FROM users WHERE username = ?", (entry.actor,)
            ).fetchone()
            names[entry.actor] = row[0] if row and row[0] else None
        key = (entry.object_type or "", entry.object_id or "")
        if key not in mrns:
            sql = _MRN_OF.get(key[0])
            row = db.execute(sql, (key[1],)).fetchone() if sql and key[1] else None
            mrns[key] = str(row[0]) if row and row[0] is not None else None
        out.append(DisplayEntry(**entry.model_dump(), actor_name=names[entry.actor], mrn=mrns[key]))
    return out
