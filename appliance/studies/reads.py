"""Audited reads of the study index: a study, a patient's studies, a study's series and a
series' instances in display order (as a list or as a viewer opens it), and id lookups.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.studies.models import (
    InstanceOut,
    PatientStudies,
    SeriesOut,
    StudyDetail,
    StudyOut,
)
from appliance.studies.rows import (
    PATIENT_COLUMNS,
    SERIES_OF_STUDY,
    STUDY_COLUMNS,
    patient_summary,
    select_one,
    select_rows,
    series_out,
    study_fields,
)


def get_study(db: sqlite_utils.Database, study_id: str, actor: Actor) -> StudyDetail:
    """One study with its patient and its series (by series number)."""

    def read() -> StudyDetail:
        row = select_one(
            db,
            f"SELECT {STUDY_COLUMNS}, {PATIENT_COLUMNS} FROM studies s"  # noqa: S608
            " JOIN patients p ON p.id = s.patient_id WHERE s.id = ?",
            (study_id,),
            f"study {study_id}",
        )
        series = select_rows(db, SERIES_OF_STUDY, (study_id,))
        return StudyDetail(
            **study_fields(row),
            patient=patient_summary(row),
            series=[series_out(s) for s in series],
        )

    return audit.audited_read(
        db,
        actor,
        "study.read",
        "study",
        study_id,
        read,
        lambda detail: {"patient_id": detail.patient.id, "series": len(detail.series)},
    )


def patient_studies(db: sqlite_utils.Database, patient_id: str, actor: Actor) -> PatientStudies:
    """A patient's studies, newest first by study date and time, then by arrival."""

    def read() -> PatientStudies:
        patient = select_one(
            db,
            f"SELECT {PATIENT_COLUMNS} FROM patients p WHERE p.id = ?",  # noqa: S608
            (patient_id,),
            f"patient {patient_id}",
        )
        rows = select_rows(
            db,
            f"SELECT {STUDY_COLUMNS} FROM studies s WHERE s.patient_id = ?"  # noqa: S608
            " ORDER BY COALESCE(s.study_date, '') DESC, COALESCE(s.study_time, '') DESC,"
            " s.created_at DESC",
            (patient_id,),
        )
        return PatientStudies(
            patient=patient_summary(patient), studies=[StudyOut(**study_fields(r)) for r in rows]
        )

    return audit.audited_read(
        db,
        actor,
        "study.list",
        "patient",
        patient_id,
        read,
        lambda found: {"returned": [s.id for s in found.studies]},
    )


def study_series(db: sqlite_utils.Database, study_id: str, actor: Actor) -> list[SeriesOut]:
    """The series of a study, by series number."""

    def read() -> list[SeriesOut]:
        select_one(db, "SELECT id FROM studies WHERE id = ?", (study_id,), f"study {study_id}")
        rows = select_rows(db, SERIES_OF_STUDY, (study_id,))
        return [series_out(r) for r in rows]

    return audit.audited_read(
        db,
        actor,
        "series.list",
        "study",
        study_id,
        read,
        lambda found: {"returned": [s.id for s in found]},
    )


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    values = json.loads(text)
    return [float(v) for v in values] if isinstance(values, list) else None


def _slice_normal(rows: list[dict[str, Any]]) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """The normal of the series' image plane: row x column direction (PS3.3 C.7.6.2.1.1)."""
    for row in rows:
        orientation = _floats(row["image_orientation"])
        if orientation and len(orientation) == 6:
            normal = np.cross(np.array(orientation[:3]), np.array(orientation[3:]))
            length = float(np.linalg.norm(normal))
            if length > 1e-6:
                return normal / length
    return None


def _instance(row: dict[str, Any], normal: Any) -> InstanceOut:
    position = _floats(row["image_position"])
    along = (
        round(float(np.dot(np.array(position), normal)), 6)
        if normal is not None and position and len(position) == 3
        else None
    )
    return InstanceOut(
        id=row["id"],
        series_id=row["series_id"],
        sop_instance_uid=row["sop_instance_uid"],
        sop_class_uid=row["sop_class_uid"],
        instance_number=row["instance_number"],
        rows=row["rows"],
        columns=row["columns"],
        frames=row["number_of_frames"] or 1,
        transfer_syntax_uid=row["transfer_syntax_uid"],
        image_position=position,
        image_orientation=_floats(row["image_orientation"]),
        pixel_spacing=_floats(row["pixel_spacing"]),
        slice_thickness=row["slice_thickness"],
        slice_position=along,
        size=row["size"],
        sha256=row["sha256"],
        storage_state=row["storage_state"],
        received_at=row["received_at"],
    )


def order_instances(instances: list[InstanceOut]) -> list[InstanceOut]:
    """By instance number (missing last), then by position along the slice normal (missing
    last), then by SOP Instance UID so the order is stable."""

    def key(item: InstanceOut) -> tuple[bool, int, bool, float, str]:
        return (
            item.instance_number is None,
            item.instance_number or 0,
            item.slice_position is None,
            item.slice_position or 0.0,
            item.sop_instance_uid,
        )

    return sorted(instances, key=key)


def _series_read(db: sqlite_utils.Database, series_id: str) -> Callable[[], list[InstanceOut]]:
    def read() -> list[InstanceOut]:
        select_one(db, "SELECT id FROM series WHERE id = ?", (series_id,), f"series {series_id}")
        rows = select_rows(db, "SELECT * FROM instances WHERE series_id = ?", (series_id,))
        normal = _slice_normal(rows)
        return order_instances([_instance(r, normal) for r in rows])

    return read


def series_instances(db: sqlite_utils.Database, series_id: str, actor: Actor) -> list[InstanceOut]:
    """The instances of a series in display order (see :func:`order_instances`)."""
    return audit.audited_read(
        db,
        actor,
        "instance.list",
        "series",
        series_id,
        _series_read(db, series_id),
        lambda found: {"returned": len(found)},
    )


def view_series(db: sqlite_utils.Database, series_id: str, actor: Actor) -> list[InstanceOut]:
    """A series opened in a viewer: its instances in display order, audited ONCE as
    ``series.view`` (the screen then renders its slices with ``audited=False``, so scrolling
    through 133 slices writes one row, not 133)."""
    return audit.audited_read(
        db,
        actor,
        "series.view",
        "series",
        series_id,
        _series_read(db, series_id),
        lambda found: {"instances": len(found), "study_id": study_of_series(db, series_id)},
    )


def reread_viewed_series(db: sqlite_utils.Database, series_id: str) -> list[InstanceOut]:
    """The instances of a series that a viewer opened with :func:`view_series` (audited
    there), read again while its study is still arriving: the same view, so no second row."""
    return _series_read(db, series_id)()


def study_of_series(db: sqlite_utils.Database, series_id: str) -> str | None:
    """The study id of a series, None when unknown."""
    row = db.execute("SELECT study_id FROM series WHERE id = ?", (series_id,)).fetchone()
    return str(row[0]) if row else None


def index_counts(db: sqlite_utils.Database, study_ids: list[str]) -> dict[str, int]:
    """How many patients, studies, series and instances ``study_ids`` cover (counts only)."""
    if not study_ids:
        return {"patients": 0, "studies": 0, "series": 0, "instances": 0}
    marks = ", ".join("?" for _ in study_ids)
    row = db.execute(
        f"SELECT COUNT(DISTINCT s.patient_id), COUNT(DISTINCT s.id),"  # noqa: S608
        f" (SELECT COUNT(*) FROM series x WHERE x.study_id IN ({marks})),"
        " (SELECT COUNT(*) FROM instances i JOIN series x ON x.id = i.series_id"
        f" WHERE x.study_id IN ({marks})) FROM studies s WHERE s.id IN ({marks})",
        [*study_ids, *study_ids, *study_ids],
    ).fetchone()
    return {"patients": row[0], "studies": row[1], "series": row[2], "instances": row[3]}


def series_by_uid(db: sqlite_utils.Database, series_uids: list[str]) -> dict[str, tuple[str, str]]:
    """Our (series id, study id) of each indexed Series Instance UID (ids only, no patient
    data: callers audit the read they serve)."""
    if not series_uids:
        return {}
    marks = ", ".join("?" for _ in series_uids)
    rows = db.execute(
        f"SELECT series_uid, id, study_id FROM series WHERE series_uid IN ({marks})",  # noqa: S608
        series_uids,
    ).fetchall()
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}
