"""Rows of the study index as models: the shared column lists, row reads, and the patient,
study and series models made from rows.
"""

from __future__ import annotations

from typing import Any

from appliance.db.rows import fetch_all, fetch_found
from appliance.studies.models import (
    PatientSummary,
    SeriesOut,
)

STUDY_COLUMNS = (
    "s.id, s.study_uid, s.study_date, s.study_time, s.accession_number, s.description,"
    " s.modalities, s.status, s.series_count, s.instance_count, s.created_at, s.updated_at"
)
PATIENT_COLUMNS = (
    "p.id AS p_id, p.mrn AS p_mrn, p.first_name AS p_first_name, p.last_name AS p_last_name,"
    " p.sex AS p_sex, p.birth_date AS p_birth_date,"
    " p.demographics_conflict AS p_demographics_conflict"
)
SERIES_OF_STUDY = (
    "SELECT * FROM series WHERE study_id = ?"
    " ORDER BY series_number IS NULL, series_number, created_at, id"
)


#: Every row of ``sql`` as a dict; the first one or NotFound (:mod:`appliance.db.rows`).
select_rows = fetch_all
select_one = fetch_found


def patient_summary(row: dict[str, Any], prefix: str = "p_") -> PatientSummary:
    """The patient columns of a row (prefixed ``p_``) as a PatientSummary."""
    return PatientSummary(
        id=row[f"{prefix}id"],
        patient_id=row[f"{prefix}mrn"],
        first_name=row[f"{prefix}first_name"],
        last_name=row[f"{prefix}last_name"],
        sex=row[f"{prefix}sex"],
        birth_date=row[f"{prefix}birth_date"],
        demographics_conflict=bool(row[f"{prefix}demographics_conflict"]),
    )


def study_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The study columns of a row as model fields (modalities split)."""
    return {
        "id": row["id"],
        "study_uid": row["study_uid"],
        "study_date": row["study_date"],
        "study_time": row["study_time"],
        "accession_number": row["accession_number"],
        "description": row["description"],
        "modalities": [m for m in (row["modalities"] or "").split("\\") if m],
        "status": row["status"],
        "series_count": row["series_count"],
        "instance_count": row["instance_count"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def series_out(row: dict[str, Any]) -> SeriesOut:
    """A series row as a SeriesOut."""
    return SeriesOut(**{name: row[name] for name in SeriesOut.model_fields})
