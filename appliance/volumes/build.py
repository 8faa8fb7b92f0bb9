"""Building volumes: reconstruct a series from its local files, store each volume as NIfTI
and replace the series' rows; the ``volume`` job, its request and the automatic build of
stable series.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.rows import new_id, now_iso
from appliance.errors import AppError, NotFound
from appliance.jobs.models import Job, JobFailed
from appliance.studies import service as studies
from appliance.volumes.models import (
    BuildRequested,
    VolumeOut,
)
from appliance.volumes.nifti import nifti_stream
from appliance.volumes.reconstruct import (
    NOT_A_VOLUME,
    VolumeError,
    VolumeResult,
    build_volumes,
)
from appliance.volumes.records import (
    current_volumes,
    dumps,
    fingerprint,
    local_files,
    notes_of,
    remove_unreferenced,
    replace_rows,
    stored_volumes,
    volume_key,
    volume_out,
)
from appliance.volumes.series_lock import series_build_lock

JOB_KIND = "volume"


#: Modalities whose stable series get a volume built automatically.
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})
SYSTEM = Actor.system("volumes")


class Progress(Protocol):
    """What a build reports to (a job's context has this shape)."""

    def progress(self, stage: str, fraction: float) -> None: ...

    def check_cancelled(self) -> None: ...


class _NoProgress:
    def progress(self, stage: str, fraction: float) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


def _geometry(result: VolumeResult) -> dict[str, Any]:
    return {
        "shape": dumps([int(n) for n in result.voxels.shape[::-1]]),
        "spacing": dumps([float(v) for v in result.spacing]),
        "origin": dumps([float(v) for v in result.origin]),
        "direction": dumps(np.asarray(result.direction, dtype=np.float64).tolist()),
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
    One build of a series runs at a time (:mod:`~appliance.volumes.series_lock`).
    """
    with series_build_lock(series_id):
        return _build(ctx, series_id, actor, job_id, progress or _NoProgress())


def current_or_build(
    ctx: AppContext,
    series_id: str,
    actor: Actor,
    *,
    job_id: str | None = None,
    progress: Progress | None = None,
) -> tuple[list[VolumeOut], bool]:
    """The series' current volumes, built first when there are none or they are stale; and
    whether this call built them. A build by another caller is waited for, then kept."""
    with series_build_lock(series_id):
        current = current_volumes(ctx.pool.get(), series_id)
        if current is not None:
            return current, False
        return build_for_series(ctx, series_id, actor, job_id=job_id, progress=progress), True


def _build(
    ctx: AppContext, series_id: str, actor: Actor, job_id: str | None, report: Progress
) -> list[VolumeOut]:
    db = ctx.pool.get()
    studies.require_series(db, series_id)
    instances = studies.instance_files(db, series_id)
    paths = local_files(ctx, instances, series_id)
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
                "qa_notes": dumps(notes_of(result)),
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
        old = replace_rows(db, series_id, rows, actor, job_id)
    except BaseException:
        for key in written:
            ctx.store.delete(key, missing_ok=True)
        raise
    remove_unreferenced(ctx, series_id, {r.get("storage_key") for r in rows}, old)
    return [volume_out(r) for r in stored_volumes(db, series_id)]


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
        studies.require_series(db, series_id)
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
        try:
            built, rebuilt = current_or_build(
                ctx, series_id, SYSTEM, job_id=job.id, progress=context
            )
        except AppError as exc:
            raise JobFailed(exc.detail) from None
        if built and all(v.status == "failed" for v in built):
            raise JobFailed(built[0].error or "the reconstruction failed")
        return {"series_id": series_id, "volume_ids": [v.id for v in built], "rebuilt": rebuilt}

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
        series = studies.series_ref(db, event.id)
        if series is None or str(series.modality or "").upper() not in VOLUME_MODALITIES:
            return
        if current_volumes(db, event.id) is not None:
            return
        enqueue(JOB_KIND, {"series_id": event.id}, SYSTEM)

    return on_stable
