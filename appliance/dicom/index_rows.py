"""The index rows of one stored instance: patient, study, series and instance (the DICOM
information model of PS3.3 A.1.2: a patient's studies, a study's series, a series' instances).

A patient is keyed by Patient ID (MRN); differing demographics are kept aside, never blended.
A Study Instance UID belongs to one patient and a Series Instance UID to one study (PS3.3
C.7.2.1, C.7.3.1): an instance that contradicts the index is refused (:class:`Rejected`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.rows import fetch_one, new_id, now_iso
from appliance.dicom.reading import InstanceInfo, Rejected
from appliance.patients.service import fold, search_key

#: Sources of objects the appliance derives from a study it holds (a report's findings SR):
#: their series is stable as stored and the study is not reopened (no new stability event, so
#: no new analysis or volume build).
DERIVED_SOURCES = frozenset({"report"})


#: The instance row's columns that come from the file, in the order of ``values`` below;
#: written on a first store and on an overwrite alike.
_FILE_COLUMNS = (
    "sop_instance_uid", "sop_class_uid", "instance_number", "transfer_syntax_uid", "rows",
    "columns", "image_position", "image_orientation", "pixel_spacing", "slice_thickness",
    "number_of_frames", "storage_key", "size", "sha256", "source", "origin", "received_at",
)  # fmt: skip
_INSERT_INSTANCE = (
    f"INSERT INTO instances (id, series_id, {', '.join(_FILE_COLUMNS)})"  # noqa: S608
    f" VALUES (?, ?, {', '.join('?' for _ in _FILE_COLUMNS)})"
)
_OVERWRITE_INSTANCE = (
    f"UPDATE instances SET {', '.join(c + ' = ?' for c in _FILE_COLUMNS)} WHERE id = ?"  # noqa: S608
)


class IndexedIds(NamedTuple):
    instance_id: str
    series_id: str
    study_id: str
    patient_id: str


def index_instance(
    db: sqlite_utils.Database,
    info: InstanceInfo,
    key: str,
    size: int,
    sha256: str,
    source: str,
    origin: str | None,
    actor: Actor,
    existing: Any,
) -> IndexedIds:
    """Write (or, for an overwrite, update) the rows of one instance and its audit row, inside
    the caller's transaction; raises :class:`Rejected` when the UIDs contradict the index."""
    now = now_iso()
    patient_id = _patient(db, info, now)
    study_id = _study(db, info, patient_id, now)
    series_id = _series(db, info, study_id, now)
    geometry = {
        "image_position": json.dumps(info.image_position) if info.image_position else None,
        "image_orientation": json.dumps(info.image_orientation) if info.image_orientation else None,
        "pixel_spacing": json.dumps(info.pixel_spacing) if info.pixel_spacing else None,
    }
    values = (
        info.sop_instance_uid, info.sop_class_uid, info.instance_number,
        info.transfer_syntax_uid, info.rows, info.columns, geometry["image_position"],
        geometry["image_orientation"], geometry["pixel_spacing"], info.slice_thickness,
        info.number_of_frames, key, size, sha256, source, origin, now,
    )  # fmt: skip
    if existing is None:
        instance_id = new_id()
        db.execute(_INSERT_INSTANCE, (instance_id, series_id, *values))
        if source in DERIVED_SOURCES:
            _count_derived(db, series_id, study_id, now)
        else:
            db.execute(
                "UPDATE series SET instance_count = instance_count + 1, last_instance_at = ?,"
                " status = 'receiving', stable_at = NULL, updated_at = ? WHERE id = ?",
                (now, now, series_id),
            )
            db.execute(
                "UPDATE studies SET instance_count = instance_count + 1, last_instance_at = ?,"
                " status = 'receiving', stable_at = NULL, updated_at = ? WHERE id = ?",
                (now, now, study_id),
            )
        action = "dicom.store"
    else:
        instance_id = existing[0]
        if existing[2] != series_id:
            raise Rejected("this SOP Instance UID is stored in another series")
        db.execute(_OVERWRITE_INSTANCE, (*values, instance_id))
        action = "dicom.overwrite"
    audit.record(
        db,
        actor,
        action,
        object_type="instance",
        object_id=instance_id,
        detail={"study_id": study_id, "series_id": series_id, "source": source},
    )
    return IndexedIds(instance_id, series_id, study_id, patient_id)


def _count_derived(db: sqlite_utils.Database, series_id: str, study_id: str, now: str) -> None:
    db.execute(
        "UPDATE series SET instance_count = instance_count + 1, last_instance_at = ?,"
        " status = 'stable', stable_at = COALESCE(stable_at, ?), updated_at = ? WHERE id = ?",
        (now, now, now, series_id),
    )
    db.execute(
        "UPDATE studies SET instance_count = instance_count + 1, updated_at = ? WHERE id = ?",
        (now, study_id),
    )


def _patient(db: sqlite_utils.Database, info: InstanceInfo, now: str) -> str:
    """The patient with this MRN; created when unknown. Differing demographics are kept aside
    in ``patient_demographics`` and flag the patient; the record itself is not overwritten."""
    mrn = info.patient_id or "NOID-" + hashlib.sha256(info.study_uid.encode()).hexdigest()[:16]
    incoming = {
        "first_name": info.patient_given,
        "last_name": info.patient_family,
        "birth_date": info.birth_date,
        "sex": info.sex,
    }
    row = fetch_one(db, "SELECT * FROM patients WHERE mrn = ?", (mrn,))
    if row is None:
        patient_id = new_id()
        record = {
            "id": patient_id,
            "mrn": mrn,
            **incoming,
            "source": "dicom",
            "demographics_conflict": 0,
            "created_at": now,
            "updated_at": now,
        }
        record["search_key"] = search_key(record)
        db.table("patients").insert(record)
        return patient_id
    conflict = any(v and row[k] and fold(str(v)) != fold(str(row[k])) for k, v in incoming.items())
    # Empty fields are completed only from a source that agrees with everything known: a
    # conflicting identity must not be blended into the record.
    fill = {} if conflict else {k: v for k, v in incoming.items() if v and not row[k]}
    if fill:
        merged = {**row, **fill}
        db.table("patients").update(
            row["id"], {**fill, "search_key": search_key(merged), "updated_at": now}
        )
    if conflict:
        db.execute(
            "UPDATE patients SET demographics_conflict = 1, updated_at = ? WHERE id = ?",
            (now, row["id"]),
        )
        db.execute(
            "INSERT OR IGNORE INTO patient_demographics (id, patient_id, first_name, last_name,"
            " birth_date, sex, study_uid, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new_id(),
                row["id"],
                incoming["first_name"],
                incoming["last_name"],
                incoming["birth_date"],
                incoming["sex"],
                info.study_uid,
                now,
            ),
        )
    return str(row["id"])


def _study(db: sqlite_utils.Database, info: InstanceInfo, patient_id: str, now: str) -> str:
    row = db.execute(
        "SELECT id, patient_id, modalities FROM studies WHERE study_uid = ?", (info.study_uid,)
    ).fetchone()
    if row is None:
        study_id = new_id()
        db.execute(
            "INSERT INTO studies (id, patient_id, study_uid, study_date, study_time,"
            " accession_number, description, modalities, referring_physician, status,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'receiving', ?, ?)",
            (
                study_id,
                patient_id,
                info.study_uid,
                info.study_date,
                info.study_time,
                info.accession_number,
                info.study_description,
                info.modality,
                info.referring_physician,
                now,
                now,
            ),
        )
        return study_id
    if row[1] != patient_id:
        raise Rejected("this StudyInstanceUID is already stored for a different PatientID")
    modalities = set(filter(None, (row[2] or "").split("\\")))
    if info.modality and info.modality not in modalities:
        merged = "\\".join(sorted(modalities | {info.modality}))
        db.execute("UPDATE studies SET modalities = ? WHERE id = ?", (merged, row[0]))
    return str(row[0])


def _series(db: sqlite_utils.Database, info: InstanceInfo, study_id: str, now: str) -> str:
    row = db.execute(
        "SELECT id, study_id FROM series WHERE series_uid = ?", (info.series_uid,)
    ).fetchone()
    if row is None:
        series_id = new_id()
        db.execute(
            "INSERT INTO series (id, study_id, series_uid, modality, series_number, description,"
            " body_part, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'receiving', ?, ?)",
            (
                series_id,
                study_id,
                info.series_uid,
                info.modality,
                info.series_number,
                info.series_description,
                info.body_part,
                now,
                now,
            ),
        )
        db.execute("UPDATE studies SET series_count = series_count + 1 WHERE id = ?", (study_id,))
        return series_id
    if row[1] != study_id:
        raise Rejected("this SeriesInstanceUID is already stored in a different study")
    return str(row[0])
