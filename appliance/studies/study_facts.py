"""Unaudited reads of the study index for other domains' internal use (analysis requests, its
prior-study choice, its arrival check, the de-identification of model text): ids, dates,
statuses and counts. The callers audit what they serve; the audited reads for people are in
:mod:`appliance.studies.reads`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from appliance.dicom.index_rows import DERIVED_SOURCES
from appliance.errors import NotFound


@dataclass(frozen=True, slots=True)
class StudyDates:
    """A study's patient and the dates that order it (DICOM DA ``study_date`` may be unknown)."""

    id: str
    patient_id: str
    study_date: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class StudyArrival:
    """A study's status, when its last instance arrived and how many instances it holds."""

    status: str
    last_instance_at: str | None
    instances: int


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    """What the record holds about a study's patient and the study's accession number."""

    mrn: str | None
    first_name: str | None
    last_name: str | None
    birth_date: str | None
    accession_number: str | None


def require_study(db: sqlite_utils.Database, study_id: str, what: str = "study") -> None:
    """Nothing when the study exists; :class:`NotFound` (``"<what> not found"``) otherwise."""
    if db.execute("SELECT id FROM studies WHERE id = ?", (study_id,)).fetchone() is None:
        raise NotFound(f"{what} not found")


def study_dates(db: sqlite_utils.Database, study_id: str, what: str = "study") -> StudyDates:
    """The patient and dates of a study; :class:`NotFound` (``"<what> not found"``) if none."""
    row = db.execute(
        "SELECT id, patient_id, study_date, created_at FROM studies WHERE id = ?", (study_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"{what} not found")
    return StudyDates(str(row[0]), str(row[1]), row[2], row[3])


def patient_studies_with_modality(
    db: sqlite_utils.Database, patient_id: str, modalities: tuple[str, ...], exclude: str
) -> list[StudyDates]:
    """The patient's other studies (not ``exclude``) holding a series of one of
    ``modalities`` (compared upper-case), newest study date first, then newest created."""
    marks = ", ".join("?" for _ in modalities)
    found = db.execute(
        "SELECT s.id, s.patient_id, s.study_date, s.created_at FROM studies s"  # noqa: S608
        " WHERE s.patient_id = ? AND s.id != ? AND EXISTS (SELECT 1 FROM series x"
        f" WHERE x.study_id = s.id AND UPPER(x.modality) IN ({marks}))"
        " ORDER BY s.study_date DESC, s.created_at DESC",
        (patient_id, exclude, *modalities),
    ).fetchall()
    return [StudyDates(str(r[0]), str(r[1]), r[2], r[3]) for r in found]


def study_arrival(db: sqlite_utils.Database, study_id: str) -> StudyArrival | None:
    """How far a study has arrived (its status, last arrival, instance count); None if none.
    Instances the appliance derived itself (the findings SR) did not arrive: not counted."""
    row = db.execute(
        "SELECT status, last_instance_at FROM studies WHERE id = ?", (study_id,)
    ).fetchone()
    if row is None:
        return None
    derived = sorted(DERIVED_SOURCES)
    marks = ", ".join("?" for _ in derived)
    count = db.execute(
        "SELECT COUNT(*) FROM instances i JOIN series s ON s.id = i.series_id"  # noqa: S608
        f" WHERE s.study_id = ? AND (i.source IS NULL OR i.source NOT IN ({marks}))",
        (study_id, *derived),
    ).fetchone()[0]
    return StudyArrival(str(row[0]), row[1], int(count))


def patient_identity(db: sqlite_utils.Database, study_id: str) -> PatientIdentity | None:
    """The identifiers the record holds for a study's patient; None when the study is unknown."""
    row = db.execute(
        "SELECT p.mrn, p.first_name, p.last_name, p.birth_date, s.accession_number"
        " FROM studies s JOIN patients p ON p.id = s.patient_id WHERE s.id = ?",
        (study_id,),
    ).fetchone()
    return PatientIdentity(*row) if row else None


def comparison_prior(db: sqlite_utils.Database, study_id: str) -> str | None:
    """The Study Instance UID of the prior to show beside a study (a longitudinal reading):
    the same patient's most recent study with an earlier Study Date (0008,0020), preferring
    one that shares a modality with it; None when the patient has none or the study has no
    date. A derived series (the findings SR) does not count as a modality shared."""
    current = db.execute(
        "SELECT patient_id, study_date FROM studies WHERE id = ?", (study_id,)
    ).fetchone()
    if current is None or not current[1]:
        return None
    earlier = db.execute(
        "SELECT s.study_uid, EXISTS (SELECT 1 FROM series a JOIN series b"
        " ON UPPER(a.modality) = UPPER(b.modality) AND UPPER(a.modality) != 'SR'"
        " WHERE a.study_id = s.id AND b.study_id = ?) FROM studies s"
        " WHERE s.patient_id = ? AND s.id != ? AND s.study_date IS NOT NULL"
        " AND s.study_date != '' AND s.study_date < ?"
        " ORDER BY s.study_date DESC, s.created_at DESC",
        (study_id, current[0], study_id, current[1]),
    ).fetchall()
    if not earlier:
        return None
    shared = [row for row in earlier if row[1]]
    return str((shared or earlier)[0][0])
