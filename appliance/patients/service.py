"""Patient records: create, search, read, change, delete; every call is audited.

Audit rows name our patient ids only; search text and demographics never enter them.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import snapshot, transaction
from appliance.db.rows import escape_like, fetch_all, fetch_found, new_id, now_iso
from appliance.errors import Conflict, NotFound
from appliance.patients.models import (
    PatientCreate,
    PatientHistory,
    PatientOut,
    PatientPage,
    PatientUpdate,
    StudySummary,
)

_COLUMNS = {
    "patient_id": "mrn",
    "first_name": "first_name",
    "last_name": "last_name",
    "birth_date": "birth_date",
    "sex": "sex",
    "phone": "phone",
    "email": "email",
    "address": "address",
}


def fold(text: str) -> str:
    """Case- and accent-insensitive form used for search (Hélène ~ helene)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def search_key(row: dict[str, Any]) -> str:
    """The folded text a patient is found by: MRN, first and last name."""
    parts = (row.get("mrn"), row.get("first_name"), row.get("last_name"))
    return " ".join(fold(str(p)) for p in parts if p)


def _out(row: dict[str, Any]) -> PatientOut:
    return PatientOut(
        id=row["id"],
        patient_id=row["mrn"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        birth_date=row["birth_date"],
        sex=row["sex"],
        phone=row["phone"],
        email=row["email"],
        address=row["address"],
        source=row["source"],
        demographics_conflict=bool(row["demographics_conflict"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _fetch(db: sqlite_utils.Database, patient_id: str) -> dict[str, Any]:
    return fetch_found(
        db, "SELECT * FROM patients WHERE id = ?", (patient_id,), f"patient {patient_id}"
    )


def _mrn_taken(db: sqlite_utils.Database, mrn: str, other_than: str | None = None) -> bool:
    row = db.execute("SELECT id FROM patients WHERE mrn = ?", (mrn,)).fetchone()
    return row is not None and row[0] != other_than


def create(db: sqlite_utils.Database, data: PatientCreate, actor: Actor) -> PatientOut:
    """Create a patient; Conflict when the MRN exists already."""
    now = now_iso()
    row: dict[str, Any] = {
        "id": new_id(),
        "source": "manual",
        "demographics_conflict": 0,
        "created_at": now,
        "updated_at": now,
    }
    for field, column in _COLUMNS.items():
        value = getattr(data, field)
        row[column] = value.isoformat() if hasattr(value, "isoformat") else value
    row["search_key"] = search_key(row)
    with transaction(db):
        if _mrn_taken(db, row["mrn"]):
            raise Conflict("a patient with this MRN already exists")
        try:
            db.table("patients").insert(row)
        except sqlite3.IntegrityError:
            raise Conflict("a patient with this MRN already exists") from None
        audit.record(db, actor, "patient.create", object_type="patient", object_id=row["id"])
    return _out(row)


def get(db: sqlite_utils.Database, patient_id: str, actor: Actor) -> PatientOut:
    error: NotFound | None = None
    with snapshot(db):
        try:
            row = _fetch(db, patient_id)
        except NotFound as exc:
            error = exc
    audit.record_read(
        db,
        actor,
        "patient.read",
        object_type="patient",
        object_id=patient_id,
        outcome="not_found" if error else "success",
    )
    if error is not None:
        raise error
    return _out(row)


def search(
    db: sqlite_utils.Database,
    actor: Actor,
    *,
    text: str | None,
    limit: int,
    offset: int,
) -> PatientPage:
    """Patients whose MRN or names contain every word of ``text``, sorted by name then MRN."""
    where: list[str] = []
    params: list[Any] = []
    for word in fold(text or "").split():
        where.append("search_key LIKE ? ESCAPE '\\'")
        params.append(f"%{escape_like(word)}%")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with snapshot(db):
        total = db.execute(f"SELECT COUNT(*) FROM patients {clause}", params).fetchone()[0]  # noqa: S608
        rows = fetch_all(
            db,
            f"SELECT * FROM patients {clause} ORDER BY last_name COLLATE NOCASE,"  # noqa: S608
            " first_name COLLATE NOCASE, mrn LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
    audit.record_read(
        db,
        actor,
        "patient.list",
        object_type="patient",
        detail={"returned": [r["id"] for r in rows], "total": total, "searched": bool(where)},
    )
    return PatientPage(items=[_out(r) for r in rows], total=total, limit=limit, offset=offset)


def update(
    db: sqlite_utils.Database, patient_id: str, data: PatientUpdate, actor: Actor
) -> PatientOut:
    """Change the given fields; Conflict when the new MRN belongs to another patient."""
    changes: dict[str, Any] = {}
    for field in data.model_fields_set:
        value = getattr(data, field)
        changes[_COLUMNS[field]] = value.isoformat() if hasattr(value, "isoformat") else value
    with transaction(db):
        row = _fetch(db, patient_id)
        if "mrn" in changes and _mrn_taken(db, changes["mrn"], other_than=patient_id):
            raise Conflict("another patient has this MRN")
        row.update(changes)
        row["search_key"] = search_key(row)
        row["updated_at"] = now_iso()
        db.table("patients").update(
            patient_id,
            {**changes, "search_key": row["search_key"], "updated_at": row["updated_at"]},
        )
        audit.record(
            db,
            actor,
            "patient.update",
            object_type="patient",
            object_id=patient_id,
            detail={"fields": sorted(data.model_fields_set)},
        )
    return _out(row)


def delete(db: sqlite_utils.Database, patient_id: str, actor: Actor) -> None:
    """Delete a patient without studies; Conflict while studies reference it.

    A refusal is audited too (committed before the error is raised).
    """
    error: Conflict | None = None
    with transaction(db):
        _fetch(db, patient_id)
        studies = db.execute(
            "SELECT COUNT(*) FROM studies WHERE patient_id = ?", (patient_id,)
        ).fetchone()[0]
        if studies:
            audit.record(
                db,
                actor,
                "patient.delete",
                object_type="patient",
                object_id=patient_id,
                outcome="refused",
                detail={"reason": "has studies", "studies": studies},
            )
            error = Conflict(
                f"the patient has {studies} studies; they must be removed first", studies=studies
            )
        else:
            db.execute("DELETE FROM patients WHERE id = ?", (patient_id,))
            audit.record(db, actor, "patient.delete", object_type="patient", object_id=patient_id)
    if error is not None:
        raise error


def history(db: sqlite_utils.Database, patient_id: str, actor: Actor) -> PatientHistory:
    """The patient and their studies, newest first (by study date and time, then arrival)."""
    with transaction(db):
        row = _fetch(db, patient_id)
        found = fetch_all(
            db,
            "SELECT id, study_uid, study_date, study_time, accession_number, description,"
            " modalities, status, instance_count, created_at FROM studies WHERE patient_id = ?"
            " ORDER BY COALESCE(study_date, '') DESC, COALESCE(study_time, '') DESC,"
            " created_at DESC",
            (patient_id,),
        )
        studies = [StudySummary(**row) for row in found]
        audit.record(
            db,
            actor,
            "patient.history",
            object_type="patient",
            object_id=patient_id,
            detail={"studies": [s.id for s in studies]},
        )
    return PatientHistory(patient=_out(row), studies=studies)
