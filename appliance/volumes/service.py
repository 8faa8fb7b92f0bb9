"""Building, storing, listing and rendering the volumes of a series.

:func:`build_for_series` reads the series' instance files from the object store (through the
index: every instance must be kept locally), runs :func:`~appliance.volumes.reconstruct.
build_volumes` and stores each volume as NIfTI under ``volumes/<series_id>/<volume_id>.nii.gz``
with one ``volumes`` row: geometry, dtype, QA notes, label and status ``ready``. Images that are
not a volume (radiographs, lone slices, mixed orientations) give a ``not_applicable`` row with
the reason; an input that cannot be reconstructed gives one ``failed`` row with the error.

Rebuilding REPLACES: the new files are written first, then one transaction deletes the series'
old rows and inserts the new ones, then the old files are removed. A reader sees either the
old set or the new one; a volume id from an older build answers 404 afterwards. Each row keeps
the ``fingerprint`` of the input (SHA-256 over the instances' SOP Instance UIDs and content
hashes and :data:`BUILDER_VERSION`), so :func:`current_volumes` can tell whether the stored
volumes still match the series (a new or replaced instance, or a new builder, makes them stale).

Audit (ids only): ``volume.build``, ``volume.request``, ``volume.read``, ``volume.list``,
``volume.nifti``, ``volume.slice``, ``volume.key_image``, ``series.thumbnail`` and, for the
CLI, ``volume.export``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.connection import transaction
from appliance.db.rows import new_id, now_iso
from appliance.dicom import preview
from appliance.errors import AppError, Conflict, InvalidInput, NotFound
from appliance.jobs.models import Job, JobFailed
from appliance.logs import get_logger
from appliance.volumes import render
from appliance.volumes.models import (
    BuildRequested,
    ExportedVolume,
    ExportReport,
    NiftiFile,
    QANoteOut,
    VolumeOut,
)
from appliance.volumes.nifti import nifti_stream, read_nifti, write_nifti
from appliance.volumes.reconstruct import (
    NOT_A_VOLUME,
    RESCALE_NOT_HU,
    STORED_VALUES_NOT_HU,
    VolumeError,
    VolumeResult,
    build_volumes,
)

log = get_logger("radiant.volumes")

#: Part of every fingerprint: bump it when the reconstruction changes its output.
BUILDER_VERSION = "1"
JOB_KIND = "volume"
PREFIX = "volumes"
#: Modalities whose stable series get a volume built automatically.
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})
SYSTEM = Actor.system("volumes")
#: Decoded volumes kept in memory for scrolling (bytes of voxels); the newest always stays.
CACHE_BYTES = 512 * 1024 * 1024


class Progress(Protocol):
    """What a build reports to (a job's context has this shape)."""

    def progress(self, stage: str, fraction: float) -> None: ...

    def check_cancelled(self) -> None: ...


class _NoProgress:
    def progress(self, stage: str, fraction: float) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


# ---- rows -------------------------------------------------------------------------------------


def _rows(db: sqlite_utils.Database, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def _out(row: dict[str, Any]) -> VolumeOut:
    return VolumeOut(
        id=row["id"],
        series_id=row["series_id"],
        ordinal=int(row["ordinal"] or 0),
        label=row["label"],
        status=row["status"],
        reason=row["reason"],
        error=row["error"],
        shape=_loads(row["shape"]),
        spacing=_loads(row["spacing"]),
        origin=_loads(row["origin"]),
        direction=_loads(row["direction"]),
        dtype=row["dtype"],
        qa_notes=[QANoteOut(**n) for n in (_loads(row["qa_notes"]) or [])],
        size=row["size"],
        sha256=row["sha256"],
        job_id=row["job_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_jsonable, separators=(",", ":"))


def notes_of(result: VolumeResult) -> list[dict[str, Any]]:
    """The QA notes of a result as JSON-ready ``{code, text, details}``."""
    return [
        json.loads(_dumps({"code": n.code, "text": n.text, "details": n.details}))
        for n in result.notes
    ]


def _series_row(db: sqlite_utils.Database, series_id: str) -> dict[str, Any]:
    rows = _rows(db, "SELECT * FROM series WHERE id = ?", (series_id,))
    if not rows:
        raise NotFound(f"series {series_id} not found")
    return rows[0]


def _volume_row(db: sqlite_utils.Database, volume_id: str) -> dict[str, Any]:
    rows = _rows(
        db,
        "SELECT v.*, s.modality AS modality, s.study_id AS study_id FROM volumes v"
        " JOIN series s ON s.id = v.series_id WHERE v.id = ?",
        (volume_id,),
    )
    if not rows:
        raise NotFound(f"volume {volume_id} not found")
    return rows[0]


def _instances(db: sqlite_utils.Database, series_id: str) -> list[dict[str, Any]]:
    return _rows(
        db,
        "SELECT id, sop_instance_uid, sha256, storage_key, storage_state, number_of_frames"
        " FROM instances WHERE series_id = ?"
        " ORDER BY instance_number IS NULL, instance_number, sop_instance_uid",
        (series_id,),
    )


def fingerprint(instances: list[dict[str, Any]]) -> str:
    """SHA-256 over :data:`BUILDER_VERSION` and every (SOP Instance UID, content SHA-256)."""
    digest = hashlib.sha256(f"radiant-volumes/{BUILDER_VERSION}\n".encode())
    for uid, sha in sorted((r["sop_instance_uid"], r["sha256"]) for r in instances):
        digest.update(f"{uid}:{sha}\n".encode())
    return digest.hexdigest()


def _stored_volumes(db: sqlite_utils.Database, series_id: str) -> list[dict[str, Any]]:
    return _rows(db, "SELECT * FROM volumes WHERE series_id = ? ORDER BY ordinal", (series_id,))


def current_volumes(db: sqlite_utils.Database, series_id: str) -> list[VolumeOut] | None:
    """The series' volumes when they were built from its current instances and none failed;
    None when there are none, they are stale, or a build failed (worth another try)."""
    rows = _stored_volumes(db, series_id)
    if not rows or any(r["status"] == "failed" for r in rows):
        return None
    current = fingerprint(_instances(db, series_id))
    if any(r["fingerprint"] != current for r in rows):
        return None
    return [_out(r) for r in rows]


def _local_files(ctx: AppContext, instances: list[dict[str, Any]], series_id: str) -> list[Path]:
    if not instances:
        raise Conflict(f"series {series_id} has no instances")
    remote = sum(1 for r in instances if r["storage_state"] != "local")
    if remote:
        raise Conflict(
            f"{remote} of {len(instances)} instances of series {series_id} are not kept on this "
            "appliance"
        )
    paths = [ctx.store.path(r["storage_key"]) for r in instances]
    missing = sum(1 for p in paths if not p.is_file())
    if missing:
        raise Conflict(
            f"{missing} instance files of series {series_id} are missing from storage; "
            "run `radiant fsck`"
        )
    return paths


# ---- building -------------------------------------------------------------------------------


def volume_key(series_id: str, volume_id: str) -> str:
    return f"{PREFIX}/{series_id}/{volume_id}.nii.gz"


def _geometry(result: VolumeResult) -> dict[str, Any]:
    return {
        "shape": _dumps([int(n) for n in result.voxels.shape[::-1]]),
        "spacing": _dumps([float(v) for v in result.spacing]),
        "origin": _dumps([float(v) for v in result.origin]),
        "direction": _dumps(np.asarray(result.direction, dtype=np.float64).tolist()),
        "dtype": str(result.voxels.dtype),
    }


def build_for_series(
    ctx: AppContext,
    series_id: str,
    actor: Actor,
    *,
    job_id: str | None = None,
    progress: Progress | None = None,
) -> list[VolumeOut]:
    """Reconstruct the series' volumes, store them, replace its rows; audited ``volume.build``.

    NotFound for an unknown series; Conflict when its files are not all here. A series that
    cannot be reconstructed is not an exception: it gives one ``failed`` row with the reason.
    """
    report = progress or _NoProgress()
    db = ctx.pool.get()
    _series_row(db, series_id)
    instances = _instances(db, series_id)
    paths = _local_files(ctx, instances, series_id)
    source = fingerprint(instances)
    now = now_iso()
    report.progress(f"reconstructing from {len(paths)} files", 0.05)
    rows: list[dict[str, Any]] = []
    written: list[str] = []
    base = {
        "series_id": series_id,
        "fingerprint": source,
        "job_id": job_id,
        "created_at": now,
        "updated_at": now,
    }
    try:
        try:
            results = build_volumes(paths)
        except VolumeError as exc:
            results = []
            rows.append(
                {
                    **base,
                    "id": new_id(),
                    "ordinal": 0,
                    "status": "failed",
                    "error": str(exc),
                    "qa_notes": "[]",
                }
            )
        report.check_cancelled()
        for ordinal, result in enumerate(results):
            report.progress(
                f"writing volume {ordinal + 1} of {len(results)}",
                0.7 + 0.25 * ordinal / max(1, len(results)),
            )
            volume_id = new_id()
            row = {
                **base,
                "id": volume_id,
                "ordinal": ordinal,
                "label": result.label or None,
                "qa_notes": _dumps(notes_of(result)),
                **_geometry(result),
            }
            if result.is_volume:
                key = volume_key(series_id, volume_id)
                with nifti_stream(result) as stream:
                    stored = ctx.store.put(key, stream)
                written.append(key)
                row.update(status="ready", storage_key=key, size=stored.size, sha256=stored.sha256)
            else:
                note = result.note(NOT_A_VOLUME)
                row.update(status="not_applicable", reason=note.text if note else "not a volume")
            rows.append(row)
            report.check_cancelled()
        del results
        report.progress("indexing", 0.97)
        old = _replace_rows(db, series_id, rows, actor, job_id)
    except BaseException:
        for key in written:
            ctx.store.delete(key, missing_ok=True)
        raise
    _remove_unreferenced(ctx, series_id, {r.get("storage_key") for r in rows}, old)
    return [_out(r) for r in _stored_volumes(db, series_id)]


_COLUMNS = (
    "id",
    "series_id",
    "ordinal",
    "label",
    "status",
    "reason",
    "error",
    "storage_key",
    "shape",
    "spacing",
    "origin",
    "direction",
    "dtype",
    "qa_notes",
    "fingerprint",
    "size",
    "sha256",
    "job_id",
    "created_at",
    "updated_at",
)


def _replace_rows(
    db: sqlite_utils.Database,
    series_id: str,
    rows: list[dict[str, Any]],
    actor: Actor,
    job_id: str | None,
) -> list[str]:
    """Swap the series' rows for ``rows`` in one transaction; returns the old storage keys."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    with transaction(db):
        old = [
            r[0]
            for r in db.execute(
                "SELECT storage_key FROM volumes WHERE series_id = ? AND storage_key IS NOT NULL",
                (series_id,),
            ).fetchall()
        ]
        db.execute("DELETE FROM volumes WHERE series_id = ?", (series_id,))
        marks = ", ".join("?" for _ in _COLUMNS)
        for row in rows:
            db.execute(
                f"INSERT INTO volumes ({', '.join(_COLUMNS)}) VALUES ({marks})",  # noqa: S608
                [row.get(c) for c in _COLUMNS],
            )
        only_failed = bool(rows) and all(r["status"] == "failed" for r in rows)
        audit.record(
            db,
            actor,
            "volume.build",
            object_type="series",
            object_id=series_id,
            outcome="failed" if only_failed else "success",
            detail={
                "volumes": [r["id"] for r in rows],
                "counts": counts,
                "job_id": job_id,
                "replaced": len(old),
            },
        )
    return old


def _remove_unreferenced(ctx: AppContext, series_id: str, keep: set[Any], old: list[str]) -> None:
    """Delete the old files and any left by an interrupted build of this series."""
    stale = set(old)
    try:
        stale.update(ctx.store.iter_keys(f"{PREFIX}/{series_id}/"))
    except (OSError, ValueError):
        log.warning("volume_cleanup_listing_failed", series_id=series_id)
    for key in sorted(stale - keep):
        try:
            ctx.store.delete(key, missing_ok=True)
        except OSError:
            log.warning("volume_cleanup_failed", series_id=series_id)


def request_build(
    ctx: AppContext,
    series_id: str,
    actor: Actor,
    enqueue: Callable[[str, dict[str, Any], Actor], Any],
) -> BuildRequested:
    """The current volumes of a series, or the (queued) job that will build them.

    ``enqueue(kind, payload, actor)`` queues a job and returns a
    :class:`~appliance.jobs.service.Enqueued` (the runner's ``enqueue``). Audited
    ``volume.request``.
    """
    db = ctx.pool.get()
    try:
        _series_row(db, series_id)
    except NotFound:
        audit.record(
            db,
            actor,
            "volume.request",
            object_type="series",
            object_id=series_id,
            outcome="not_found",
        )
        raise
    current = current_volumes(db, series_id)
    if current is not None:
        audit.record(
            db,
            actor,
            "volume.request",
            object_type="series",
            object_id=series_id,
            detail={"current": [v.id for v in current]},
        )
        return BuildRequested(series_id=series_id, volumes=current)
    queued = enqueue(JOB_KIND, {"series_id": series_id}, actor)
    audit.record(
        db,
        actor,
        "volume.request",
        object_type="series",
        object_id=series_id,
        detail={"job_id": queued.job.id, "new_job": queued.created},
    )
    return BuildRequested(
        series_id=series_id, job_id=queued.job.id, job_status=queued.job.status.value
    )


def volume_job(ctx: AppContext) -> Callable[[Job, Any], dict[str, Any]]:
    """The handler of ``volume`` jobs (payload ``{"series_id"}``).

    Volumes that are already current are kept (the job reports them); a series whose every
    row failed fails the job with the reason; a missing series or file fails it too.
    """

    def handle(job: Job, context: Any) -> dict[str, Any]:
        series_id = job.payload.get("series_id")
        if not isinstance(series_id, str) or not series_id:
            raise JobFailed("the payload names no series_id")
        db = ctx.pool.get()
        current = current_volumes(db, series_id)
        if current is not None:
            return {"series_id": series_id, "volume_ids": [v.id for v in current], "rebuilt": False}
        try:
            built = build_for_series(ctx, series_id, SYSTEM, job_id=job.id, progress=context)
        except AppError as exc:
            raise JobFailed(exc.detail) from None
        if built and all(v.status == "failed" for v in built):
            raise JobFailed(built[0].error or "the reconstruction failed")
        return {"series_id": series_id, "volume_ids": [v.id for v in built], "rebuilt": True}

    return handle


def auto_build_listener(
    ctx: AppContext, enqueue: Callable[[str, dict[str, Any], Actor], Any]
) -> Callable[[Any], None]:
    """A StabilityMonitor listener: a stable CT/MR/PT/NM series gets a ``volume`` job
    (when ``RADIANT_AUTO_VOLUMES`` is on and its volumes are not already current)."""

    def on_stable(event: Any) -> None:
        if event.kind != "series" or not ctx.settings.auto_volumes:
            return
        db = ctx.pool.get()
        row = db.execute("SELECT modality FROM series WHERE id = ?", (event.id,)).fetchone()
        if row is None or str(row[0] or "").upper() not in VOLUME_MODALITIES:
            return
        if current_volumes(db, event.id) is not None:
            return
        enqueue(JOB_KIND, {"series_id": event.id}, SYSTEM)

    return on_stable


# ---- reading --------------------------------------------------------------------------------


def _audit_miss(
    db: sqlite_utils.Database,
    actor: Actor,
    action: str,
    kind: str,
    object_id: str,
    exc: AppError,
) -> None:
    audit.record(
        db,
        actor,
        action,
        object_type=kind,
        object_id=object_id,
        outcome="not_found" if isinstance(exc, NotFound) else "refused",
        detail=None if isinstance(exc, NotFound) else {"reason": exc.title},
    )


def get_volume(db: sqlite_utils.Database, volume_id: str, actor: Actor) -> VolumeOut:
    """One volume's geometry, QA notes and status; audited ``volume.read``."""
    try:
        row = _volume_row(db, volume_id)
    except NotFound as exc:
        _audit_miss(db, actor, "volume.read", "volume", volume_id, exc)
        raise
    audit.record(
        db,
        actor,
        "volume.read",
        object_type="volume",
        object_id=volume_id,
        detail={"series_id": row["series_id"]},
    )
    return _out(row)


def series_volumes(db: sqlite_utils.Database, series_id: str, actor: Actor) -> list[VolumeOut]:
    """The volumes of a series by ordinal (empty before the first build); ``volume.list``."""
    try:
        _series_row(db, series_id)
    except NotFound as exc:
        _audit_miss(db, actor, "volume.list", "series", series_id, exc)
        raise
    found = [_out(r) for r in _stored_volumes(db, series_id)]
    audit.record(
        db,
        actor,
        "volume.list",
        object_type="series",
        object_id=series_id,
        detail={"returned": [v.id for v in found]},
    )
    return found


def _ready(row: dict[str, Any]) -> None:
    if row["status"] != "ready" or not row["storage_key"]:
        because = row["reason"] or row["error"] or ""
        raise Conflict(
            f"volume {row['id']} is {row['status']}" + (f": {because}" if because else "")
        )


def volume_nifti(ctx: AppContext, volume_id: str, actor: Actor) -> NiftiFile:
    """Where the ``.nii.gz`` of a ready volume is; audited ``volume.nifti``."""
    db = ctx.pool.get()
    try:
        row = _volume_row(db, volume_id)
        _ready(row)
        path = ctx.store.path(row["storage_key"])
        if not path.is_file():
            raise Conflict(f"the NIfTI file of volume {volume_id} is missing; rebuild it")
    except (NotFound, Conflict) as exc:
        _audit_miss(db, actor, "volume.nifti", "volume", volume_id, exc)
        raise
    audit.record(
        db,
        actor,
        "volume.nifti",
        object_type="volume",
        object_id=volume_id,
        detail={"series_id": row["series_id"], "size": row["size"]},
    )
    return NiftiFile(volume_id, path, int(row["size"] or 0), str(row["sha256"] or ""))


class VolumeCache:
    """Decoded volumes in canonical orientation, newest first, within ``max_bytes``."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], render.CanonicalVolume] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, key: tuple[str, str], load: Callable[[], render.CanonicalVolume]
    ) -> render.CanonicalVolume:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        volume = load()
        with self._lock:
            self._items[key] = volume
            self._items.move_to_end(key)
            while (
                len(self._items) > 1
                and sum(v.nbytes for v in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)
        return volume

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = VolumeCache()


def _is_hu(row: dict[str, Any]) -> bool:
    codes = {n["code"] for n in (_loads(row["qa_notes"]) or [])}
    return str(row["modality"] or "").upper() == "CT" and not (
        codes & {STORED_VALUES_NOT_HU, RESCALE_NOT_HU}
    )


def _canonical(ctx: AppContext, row: dict[str, Any]) -> render.CanonicalVolume:
    def load() -> render.CanonicalVolume:
        with ctx.store.open(row["storage_key"]) as stream:
            volume = read_nifti(stream.read())
        return render.canonical(volume.voxels, volume.affine_lps, is_hu=_is_hu(row))

    return CACHE.get((row["id"], str(row["sha256"])), load)


def volume_slice(
    ctx: AppContext,
    volume_id: str,
    actor: Actor,
    *,
    plane: render.Plane,
    index: int | None,
    preset: str = "auto",
    center: float | None = None,
    width: float | None = None,
) -> render.RenderedSlice:
    """A slice of a ready volume as PNG (see :mod:`appliance.volumes.render`); the middle one
    when ``index`` is None; ``center``/``width`` (both or neither) an explicit window.
    InvalidInput (422) for an index out of range or a bad window. ``volume.slice``."""
    try:
        explicit = preview.explicit_window(center, width)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    db = ctx.pool.get()
    try:
        row = _volume_row(db, volume_id)
        _ready(row)
        volume = _canonical(ctx, row)
        chosen = volume.count(plane) // 2 if index is None else index
        try:
            rendered = render.render_slice(volume, plane, chosen, preset, window=explicit)
        except render.SliceOutOfRange as exc:
            raise InvalidInput(str(exc)) from None
    except (NotFound, Conflict, InvalidInput) as exc:
        _audit_miss(db, actor, "volume.slice", "volume", volume_id, exc)
        raise
    audit.record(
        db,
        actor,
        "volume.slice",
        object_type="volume",
        object_id=volume_id,
        detail={
            "series_id": row["series_id"],
            "plane": plane,
            "index": chosen,
            "preset": rendered.preset or "auto",
            **({"center": explicit.center, "width": explicit.width} if explicit else {}),
        },
    )
    return rendered


def _largest_ready(db: sqlite_utils.Database, series_id: str) -> dict[str, Any] | None:
    rows = _rows(
        db,
        "SELECT v.*, s.modality AS modality FROM volumes v JOIN series s ON s.id = v.series_id"
        " WHERE v.series_id = ? AND v.status = 'ready' ORDER BY v.ordinal",
        (series_id,),
    )
    if not rows:
        return None
    return max(rows, key=lambda r: (int(np.prod(_loads(r["shape"]) or [0])), -r["ordinal"]))


def key_image(ctx: AppContext, series_id: str, actor: Actor) -> render.RenderedSlice:
    """The middle slice, in the acquisition plane, of the series' largest ready volume;
    audited ``volume.key_image``. Conflict when the series has no ready volume."""
    db = ctx.pool.get()
    try:
        _series_row(db, series_id)
        row = _largest_ready(db, series_id)
        if row is None:
            raise Conflict(f"series {series_id} has no ready volume")
        rendered = render.middle_slice(_canonical(ctx, row))
    except (NotFound, Conflict) as exc:
        _audit_miss(db, actor, "volume.key_image", "series", series_id, exc)
        raise
    audit.record(
        db,
        actor,
        "volume.key_image",
        object_type="series",
        object_id=series_id,
        detail={"volume_id": row["id"], "plane": rendered.plane, "index": rendered.index},
    )
    return rendered


def series_thumbnail(ctx: AppContext, series_id: str, actor: Actor) -> bytes:
    """A small PNG of the series: the middle slice of its largest ready volume (acquisition
    plane), else the middle image of the series as received. ``series.thumbnail``."""
    db = ctx.pool.get()
    try:
        _series_row(db, series_id)
        row = _largest_ready(db, series_id)
        if row is not None:
            rendered = render.middle_slice(_canonical(ctx, row))
            png = render.thumbnail_png(rendered.pixels)
            source = {"volume_id": row["id"]}
        else:
            png, source = _instance_thumbnail(ctx, db, series_id)
    except (NotFound, Conflict, InvalidInput) as exc:
        _audit_miss(db, actor, "series.thumbnail", "series", series_id, exc)
        raise
    audit.record(
        db, actor, "series.thumbnail", object_type="series", object_id=series_id, detail=source
    )
    return png


def _instance_thumbnail(
    ctx: AppContext, db: sqlite_utils.Database, series_id: str
) -> tuple[bytes, dict[str, Any]]:
    instances = [r for r in _instances(db, series_id) if r["storage_state"] == "local"]
    if not instances:
        raise Conflict(f"series {series_id} has no image kept on this appliance")
    middle = instances[len(instances) // 2]
    frames = int(middle["number_of_frames"] or 1)
    try:
        rendered = preview.render(ctx.store.path(middle["storage_key"]), frame=frames // 2)
    except preview.NotRenderable as exc:
        raise InvalidInput(exc.reason) from None
    return render.thumbnail_png(rendered.pixels), {"instance_id": middle["id"]}


# ---- CLI export -----------------------------------------------------------------------------


def series_by_uid(db: sqlite_utils.Database, series_uid: str) -> str:
    """Our series id for a SeriesInstanceUID; NotFound when it is not in the index."""
    row = db.execute("SELECT id FROM series WHERE series_uid = ?", (series_uid,)).fetchone()
    if row is None:
        raise NotFound(f"no series with SeriesInstanceUID {series_uid} in the index")
    return str(row[0])


def numbered_paths(out: Path, count: int) -> list[Path]:
    """``out`` itself for one volume; ``NAME_1.nii.gz``, ``NAME_2.nii.gz``... for several."""
    if count == 1:
        return [out]
    name = out.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            stem, ext = name[: -len(suffix)], suffix
            break
    else:
        stem, ext = name, ".nii.gz"
    return [out.with_name(f"{stem}_{n}{ext}") for n in range(1, count + 1)]


def export_series(ctx: AppContext, series_uid: str, out: Path, actor: Actor) -> ExportReport:
    """Reconstruct a series from the index and write its volumes to ``out`` (numbered when
    several); audited ``volume.export``. Nothing is written when no image forms a volume."""
    db = ctx.pool.get()
    series_id = series_by_uid(db, series_uid)
    paths = _local_files(ctx, _instances(db, series_id), series_id)
    try:
        results = build_volumes(paths)
    except VolumeError as exc:
        raise InvalidInput(f"the series cannot be reconstructed: {exc}") from None
    volumes = [r for r in results if r.is_volume]
    skipped = [
        QANoteOut(**n)
        for r in results
        if not r.is_volume
        for n in notes_of(r)
        if n["code"] == NOT_A_VOLUME
    ]
    written: list[ExportedVolume] = []
    for result, path in zip(volumes, numbered_paths(out, len(volumes)), strict=True):
        write_nifti(result, path)
        written.append(
            ExportedVolume(
                path=path,
                label=result.label,
                shape=tuple(int(n) for n in result.voxels.shape[::-1]),
                notes=[QANoteOut(**n) for n in notes_of(result)],
            )
        )
    audit.record(
        db,
        actor,
        "volume.export",
        object_type="series",
        object_id=series_id,
        outcome="success" if written else "refused",
        detail={"files": len(written), "not_volumes": len(skipped)},
    )
    return ExportReport(written=written, not_volumes=skipped)
