"""Reading the study index: worklist, study, series, instances, original files and previews.

Every read of patient data is audited with our ids only (``study.list``, ``study.read``,
``series.list``, ``instance.list``, ``instance.file``, ``instance.preview``); search text,
names and file names never enter the audit log. Ingest itself is audited by the ingestor
(``dicom.store`` per instance, ``dicom.quarantine`` per refused file); :func:`record_upload`
adds one ``study.upload`` row per web upload with its counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import numpy as np
import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.dicom import preview
from appliance.dicom.ingest import Ingestor
from appliance.errors import AppError, Conflict, InvalidInput, NotFound
from appliance.patients.service import fold
from appliance.storage.service import ObjectStore
from appliance.studies.models import (
    FileResult,
    InstanceFile,
    InstanceOut,
    PatientStudies,
    PatientSummary,
    PreviewImage,
    SeriesOut,
    StudyDetail,
    StudyListItem,
    StudyOut,
    StudyPage,
    StudyState,
    UploadCounts,
    UploadReport,
    WorklistSort,
)
from appliance.triage.service import STUDY_RANK_SQL, study_urgencies

T = TypeVar("T")

_STUDY_COLUMNS = (
    "s.id, s.study_uid, s.study_date, s.study_time, s.accession_number, s.description,"
    " s.modalities, s.status, s.series_count, s.instance_count, s.created_at, s.updated_at"
)
_PATIENT_COLUMNS = (
    "p.id AS p_id, p.mrn AS p_mrn, p.first_name AS p_first_name, p.last_name AS p_last_name,"
    " p.sex AS p_sex, p.birth_date AS p_birth_date,"
    " p.demographics_conflict AS p_demographics_conflict"
)
_SERIES_OF_STUDY = (
    "SELECT * FROM series WHERE study_id = ?"
    " ORDER BY series_number IS NULL, series_number, created_at, id"
)


def _rows(db: sqlite_utils.Database, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _one(db: sqlite_utils.Database, sql: str, params: Any, what: str) -> dict[str, Any]:
    rows = _rows(db, sql, params)
    if not rows:
        raise NotFound(f"{what} not found")
    return rows[0]


def _patient(row: dict[str, Any], prefix: str = "p_") -> PatientSummary:
    return PatientSummary(
        id=row[f"{prefix}id"],
        patient_id=row[f"{prefix}mrn"],
        first_name=row[f"{prefix}first_name"],
        last_name=row[f"{prefix}last_name"],
        sex=row[f"{prefix}sex"],
        birth_date=row[f"{prefix}birth_date"],
        demographics_conflict=bool(row[f"{prefix}demographics_conflict"]),
    )


def _study_fields(row: dict[str, Any]) -> dict[str, Any]:
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


def _series(row: dict[str, Any]) -> SeriesOut:
    return SeriesOut(**{name: row[name] for name in SeriesOut.model_fields})


def _like(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


URGENCY_LEVELS: tuple[Literal["routine"], Literal["urgent"], Literal["critical"]] = (
    "routine",
    "urgent",
    "critical",
)
_UNREPORTED = (
    "NOT EXISTS (SELECT 1 FROM reports r WHERE r.study_id = s.id"
    " AND r.status IN ('final', 'amended'))"
)
_WORKLIST_ORDER: dict[str, str] = {
    "urgency": f"(CASE WHEN {_UNREPORTED} THEN {STUDY_RANK_SQL} ELSE 0 END) DESC,"
    " s.created_at DESC, s.id",
    "arrival": "s.created_at DESC, s.id",
    "study_date": "s.study_date IS NULL, s.study_date DESC, s.created_at DESC, s.id",
    "status": "s.status, s.created_at DESC, s.id",
}


def worklist(
    db: sqlite_utils.Database,
    actor: Actor,
    *,
    status: str | None = None,
    modality: str | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
    sort: WorklistSort = "urgency",
    urgent: bool = False,
) -> StudyPage:
    """Studies with their patient; filters combine with AND.

    ``sort``: ``urgency`` (default: unreported critical, then unreported urgent studies first,
    then newest arrival first), ``arrival``, ``study_date`` (newest first, undated last) or
    ``status``. ``urgent`` keeps studies whose AI urgency (not cleared by a radiologist) is
    urgent or critical. ``modality`` matches one of the study's modalities exactly; ``search``
    matches every word against the patient's MRN and names, case- and accent-insensitively.
    """
    where: list[str] = []
    params: list[Any] = []
    if urgent:
        where.append(f"{STUDY_RANK_SQL} > 0")
    if status:
        where.append("s.status = ?")
        params.append(status)
    if modality:
        where.append("instr('\\' || COALESCE(s.modalities, '') || '\\', ?) > 0")
        params.append(f"\\{modality.upper()}\\")
    words = fold(search or "").split()
    for word in words:
        where.append("p.search_key LIKE ? ESCAPE '\\'")
        params.append(_like(word))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    base = f"FROM studies s JOIN patients p ON p.id = s.patient_id {clause}"
    with transaction(db):
        total = db.execute(f"SELECT COUNT(*) {base}", params).fetchone()[0]
        rows = _rows(
            db,
            f"SELECT {_STUDY_COLUMNS}, {_PATIENT_COLUMNS}, {STUDY_RANK_SQL} AS urgency_rank"
            f" {base} ORDER BY {_WORKLIST_ORDER[sort]} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        audit.record(
            db,
            actor,
            "study.list",
            object_type="study",
            detail={
                "returned": [r["id"] for r in rows],
                "total": total,
                "filtered": bool(status or modality),
                "searched": bool(words),
            },
        )
    items = [
        StudyListItem(
            **_study_fields(r), patient=_patient(r), urgency=URGENCY_LEVELS[r["urgency_rank"]]
        )
        for r in rows
    ]
    return StudyPage(items=items, total=total, limit=limit, offset=offset)


def get_study(db: sqlite_utils.Database, study_id: str, actor: Actor) -> StudyDetail:
    """One study with its patient and its series (by series number)."""

    def read() -> StudyDetail:
        row = _one(
            db,
            f"SELECT {_STUDY_COLUMNS}, {_PATIENT_COLUMNS} FROM studies s"  # noqa: S608
            " JOIN patients p ON p.id = s.patient_id WHERE s.id = ?",
            (study_id,),
            f"study {study_id}",
        )
        series = _rows(db, _SERIES_OF_STUDY, (study_id,))
        return StudyDetail(
            **_study_fields(row), patient=_patient(row), series=[_series(s) for s in series]
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
        patient = _one(
            db,
            f"SELECT {_PATIENT_COLUMNS} FROM patients p WHERE p.id = ?",  # noqa: S608
            (patient_id,),
            f"patient {patient_id}",
        )
        rows = _rows(
            db,
            f"SELECT {_STUDY_COLUMNS} FROM studies s WHERE s.patient_id = ?"  # noqa: S608
            " ORDER BY COALESCE(s.study_date, '') DESC, COALESCE(s.study_time, '') DESC,"
            " s.created_at DESC",
            (patient_id,),
        )
        return PatientStudies(
            patient=_patient(patient), studies=[StudyOut(**_study_fields(r)) for r in rows]
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
        _one(db, "SELECT id FROM studies WHERE id = ?", (study_id,), f"study {study_id}")
        rows = _rows(db, _SERIES_OF_STUDY, (study_id,))
        return [_series(r) for r in rows]

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
        _one(db, "SELECT id FROM series WHERE id = ?", (series_id,), f"series {series_id}")
        rows = _rows(db, "SELECT * FROM instances WHERE series_id = ?", (series_id,))
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


def _stored_instance(
    db: sqlite_utils.Database, store: ObjectStore, instance_id: str
) -> tuple[dict[str, Any], InstanceFile]:
    row = _one(
        db,
        "SELECT i.id, i.storage_key, i.size, i.sha256, i.storage_state, s.study_id"
        " FROM instances i JOIN series s ON s.id = i.series_id WHERE i.id = ?",
        (instance_id,),
        f"instance {instance_id}",
    )
    if row["storage_state"] != "local":
        raise Conflict("the file of this instance is not kept on this appliance")
    path = store.path(row["storage_key"])
    if not path.is_file():
        raise Conflict("the file of this instance is missing from storage; run `radiant fsck`")
    return row, InstanceFile(instance_id, path, int(row["size"]), str(row["sha256"]))


def _audit_refusal(
    db: sqlite_utils.Database, actor: Actor, action: str, instance_id: str, exc: AppError
) -> None:
    outcome = "not_found" if isinstance(exc, NotFound) else "refused"
    audit.record(
        db,
        actor,
        action,
        object_type="instance",
        object_id=instance_id,
        outcome=outcome,
        detail=None if isinstance(exc, NotFound) else {"reason": exc.detail},
    )


def instance_file(
    db: sqlite_utils.Database, store: ObjectStore, instance_id: str, actor: Actor
) -> InstanceFile:
    """The original bytes of an instance, as received (audited as a read of patient data)."""
    try:
        row, found = _stored_instance(db, store, instance_id)
    except (NotFound, Conflict) as exc:
        _audit_refusal(db, actor, "instance.file", instance_id, exc)
        raise
    audit.record(
        db,
        actor,
        "instance.file",
        object_type="instance",
        object_id=instance_id,
        detail={"study_id": row["study_id"], "size": found.size},
    )
    return found


def instance_preview(
    db: sqlite_utils.Database,
    store: ObjectStore,
    instance_id: str,
    actor: Actor,
    *,
    frame: int = 0,
    preset: str = "auto",
    center: float | None = None,
    width: float | None = None,
    audited: bool = True,
) -> PreviewImage:
    """One frame rendered to PNG (see :mod:`appliance.dicom.preview`); audited, except with
    ``audited=False``: a viewer that recorded :func:`view_series` for the series (a refusal
    is audited either way).

    ``center``/``width`` (both or neither) set an explicit window in modality units.
    A bad window, a missing frame or an instance without a renderable image is an InvalidInput
    (422).
    """
    try:
        explicit = preview.explicit_window(center, width)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    try:
        row, found = _stored_instance(db, store, instance_id)
        rendered = preview.render(found.path, frame=frame, preset=preset, window=explicit)
    except (NotFound, Conflict) as exc:
        _audit_refusal(db, actor, "instance.preview", instance_id, exc)
        raise
    except preview.NotRenderable as exc:
        error = InvalidInput(exc.reason)
        _audit_refusal(db, actor, "instance.preview", instance_id, error)
        raise error from None
    png = rendered.png()
    if audited:
        audit.record(
            db,
            actor,
            "instance.preview",
            object_type="instance",
            object_id=instance_id,
            detail={
                "study_id": row["study_id"],
                "frame": frame,
                "preset": rendered.preset or "auto",
                **({"center": explicit.center, "width": explicit.width} if explicit else {}),
            },
        )
    window = rendered.window
    return PreviewImage(
        png=png,
        frame=rendered.frame,
        frames=rendered.frames,
        source=rendered.source,
        preset=rendered.preset,
        window_center=window.center if window else None,
        window_width=window.width if window else None,
        assumption=rendered.assumption,
    )


def study_of_series(db: sqlite_utils.Database, series_id: str) -> str | None:
    row = db.execute("SELECT study_id FROM series WHERE id = ?", (series_id,)).fetchone()
    return str(row[0]) if row else None


def record_upload(
    db: sqlite_utils.Database,
    actor: Actor,
    report: UploadReport,
    *,
    outcome: str = "success",
    reason: str | None = None,
) -> None:
    """One ``study.upload`` audit row: counts and study ids only (file names may hold PHI)."""
    detail: dict[str, Any] = {
        "counts": report.counts.model_dump(),
        "study_ids": report.study_ids,
        "bytes": report.received_bytes,
    }
    if reason:
        detail["reason"] = reason
    audit.record(db, actor, "study.upload", object_type="study", outcome=outcome, detail=detail)


def worklist_states(db: sqlite_utils.Database, study_ids: list[str]) -> dict[str, StudyState]:
    """Volume, analysis, report and replication state of each study (no patient data, so not
    audited; the worklist read that names the studies is)."""
    states = {study_id: StudyState(study_id=study_id) for study_id in study_ids}
    if not study_ids:
        return states
    marks = ", ".join("?" for _ in study_ids)
    for row in _rows(
        db,
        f"SELECT DISTINCT s.study_id FROM volumes v JOIN series s ON s.id = v.series_id"  # noqa: S608
        f" WHERE v.status = 'ready' AND s.study_id IN ({marks})",
        study_ids,
    ):
        states[row["study_id"]].volume_ready = True
    for row in _rows(
        db,
        f"SELECT a.study_id, a.status, (SELECT j.progress FROM jobs j WHERE j.kind = 'analysis'"  # noqa: S608
        " AND json_extract(j.payload, '$.analysis_id') = a.id ORDER BY j.created_at DESC"
        f" LIMIT 1) AS progress FROM analyses a WHERE a.study_id IN ({marks})"
        " ORDER BY a.created_at",
        study_ids,
    ):
        state = states[row["study_id"]]
        state.analysis_status = row["status"]
        running = row["status"] in ("queued", "running")
        state.analysis_progress = float(row["progress"] or 0) if running else None
    for row in _rows(
        db,
        f"SELECT study_id, status FROM reports WHERE study_id IN ({marks})"  # noqa: S608
        " ORDER BY updated_at",
        study_ids,
    ):
        states[row["study_id"]].report_status = row["status"]
    for row in _rows(
        db,
        "SELECT s.study_id, COUNT(*) AS total, SUM(CASE WHEN q.status = 'done' THEN 1 ELSE 0"  # noqa: S608
        " END) AS done FROM instances i JOIN series s ON s.id = i.series_id"
        " LEFT JOIN sync_queue q ON q.object_key = 'objects/' || i.storage_key"
        f" WHERE s.study_id IN ({marks}) GROUP BY s.study_id",
        study_ids,
    ):
        states[row["study_id"]].synced = bool(row["total"]) and row["done"] == row["total"]
    for study_id, urgency in study_urgencies(db, study_ids).items():
        states[study_id].urgency = urgency.level
        states[study_id].urgency_confirmed = urgency.review == "confirmed"
    return states


def worklist_fingerprint(db: sqlite_utils.Database) -> str:
    """Changes whenever a study arrives or changes (for a screen that refreshes itself)."""
    row = db.execute(
        "SELECT COUNT(*), MAX(updated_at), (SELECT MAX(updated_at) FROM reports),"
        " (SELECT MAX(COALESCE(urgency_reviewed_at, completed_at, started_at, created_at))"
        " FROM analyses),"
        " (SELECT TOTAL(progress) FROM jobs WHERE status IN ('queued', 'running')),"
        " (SELECT COUNT(*) FROM volumes WHERE status = 'ready'),"
        " (SELECT COUNT(*) FROM sync_queue WHERE status = 'done') FROM studies"
    ).fetchone()
    return "|".join(str(value) for value in row)


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


def ingest_uploaded(
    ingestor: Ingestor, files: list[tuple[str, bytes]], actor: Actor
) -> UploadReport:
    """Store files uploaded through the screen (one DICOM file each) through the one ingest
    path; anything without the DICOM preamble is rejected, not kept. One ``study.upload``
    audit row (counts and study ids only)."""
    results: list[FileResult] = []
    counts = UploadCounts()
    for name, data in files:
        if data[128:132] != b"DICM" and data[:2] not in (b"\x02\x00", b"\x08\x00"):
            results.append(FileResult(name=name, outcome="rejected", reason="not a DICOM file"))
            counts.rejected += 1
            continue
        found = ingestor.ingest(data, source="upload", actor=actor, origin=actor.client)
        outcome = str(found.outcome.value)
        results.append(
            FileResult(
                name=name,
                outcome=outcome,  # type: ignore[arg-type]
                reason=found.reason,
                sop_instance_uid=found.sop_instance_uid,
                study_id=found.study_id,
                instance_id=found.instance_id,
                quarantine_id=found.quarantine_id,
            )
        )
        setattr(counts, outcome, getattr(counts, outcome) + 1)
    report = UploadReport(
        files=results,
        counts=counts,
        study_ids=sorted({r.study_id for r in results if r.study_id}),
        received_bytes=sum(len(data) for _, data in files),
    )
    record_upload(ingestor.pool.get(), actor, report)
    return report


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
