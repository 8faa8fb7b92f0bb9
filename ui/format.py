"""Plain formatting of patient and study facts for the screens (no translation inside)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from appliance.studies.models import PatientSummary


def patient_name(patient: PatientSummary) -> str:
    parts = [patient.last_name or "", patient.first_name or ""]
    name = ", ".join(p for p in parts if p)
    return name or "-"


def dicom_date(value: str | None) -> date | None:
    if not value or len(value) < 8:
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def age_years(birth: date | None, on: date | None) -> int | None:
    if birth is None:
        return None
    when = on or datetime.now(UTC).date()
    years = when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))
    return years if years >= 0 else None


def received(iso: str) -> str:
    """``2024-05-01T10:11:12.123Z`` as ``2024-05-01 10:11`` (UTC)."""
    return iso[:16].replace("T", " ") if iso else ""


def study_day(value: str | None) -> str:
    found = dicom_date(value)
    return found.isoformat() if found else ""


def is_today(iso: str) -> bool:
    return bool(iso) and iso[:10] == datetime.now(UTC).date().isoformat()
