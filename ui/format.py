"""Formatting of patient and study facts for the screens; numbers and dates in the screen
language (CLDR data through Babel)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from babel.dates import format_date

from ai.safety import DISCLAIMER
from appliance.studies.models import PatientSummary
from ui import i18n


def patient_name(patient: PatientSummary) -> str:
    parts = [patient.last_name or "", patient.first_name or ""]
    name = ", ".join(p for p in parts if p)
    return name or "-"


def patient_facts(patient: PatientSummary, study_date: str | None) -> str:
    """MRN, age at the study and sex for a worklist line; each missing one in words."""
    age = age_years(patient.birth_date, dicom_date(study_date))
    sex = (patient.sex or "").strip().upper()
    return " · ".join([
        i18n.t("overlay.mrn", mrn=patient.patient_id) if (patient.patient_id or "").strip()
        else i18n.t("overlay.mrn_unknown"),
        i18n.t("overlay.age", age=age) if age is not None else i18n.t("overlay.age_unknown"),
        i18n.t(f"sex.{sex}") if sex in ("F", "M", "O") else i18n.t("overlay.sex_unknown"),
    ])


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
    """``2024-05-01T10:11:12.123Z`` as ``May 1, 2024 10:11`` (``1 mai 2024 10:11`` in French;
    UTC, 24-hour clock): the date in the screen language, the time as written."""
    if not iso:
        return ""
    try:
        day = date.fromisoformat(iso[:10])
    except ValueError:
        return iso[:16].replace("T", " ")
    return f"{long_date(day)} {iso[11:16]}".strip()


def study_day(value: str | None) -> str:
    """A DICOM date (YYYYMMDD) in the screen language, e.g. ``1 mai 2024``."""
    found = dicom_date(value)
    return long_date(found) if found else ""


def is_today(iso: str) -> bool:
    return bool(iso) and iso[:10] == datetime.now(UTC).date().isoformat()


def disclaimer(text: str) -> str:
    """The decision-support disclaimer of an AI result in the screen language (the safety
    layer's English sentence, :data:`ai.safety.DISCLAIMER`); any other text as it is."""
    return i18n.t("analysis.disclaimer") if text == DISCLAIMER else text


def number(value: float, digits: int = 0) -> str:
    """``value`` in the screen language (``71,8`` in French, ``71.8`` in English)."""
    return i18n.number(i18n.current(), value, digits)


def gigabytes(size_bytes: float) -> str:
    """A size in GB (10^9 bytes) with one decimal in the screen language."""
    return number(round(size_bytes / 1e9, 1), 1)


def long_date(value: date) -> str:
    """A date written out in the screen language (``May 1, 2024``, ``1 mai 2024``)."""
    return str(format_date(value, format="medium", locale=i18n.current()))
