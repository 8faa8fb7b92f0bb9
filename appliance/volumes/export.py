"""Export from the command line: reconstruct a series of the index and write its volumes as
NIfTI files (``radiant volume build``), audited ``volume.export``.
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.errors import InvalidInput, NotFound
from appliance.studies import service as studies
from appliance.volumes.models import (
    ExportedVolume,
    ExportReport,
    QANoteOut,
)
from appliance.volumes.nifti import write_nifti
from appliance.volumes.reconstruct import (
    NOT_A_VOLUME,
    VolumeError,
    build_volumes,
)
from appliance.volumes.records import local_files, notes_of


def series_by_uid(db: sqlite_utils.Database, series_uid: str) -> str:
    """Our series id for a SeriesInstanceUID; NotFound when it is not in the index."""
    found = studies.series_by_uid(db, [series_uid]).get(series_uid)
    if found is None:
        raise NotFound(f"no series with SeriesInstanceUID {series_uid} in the index")
    return found[0]


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
    paths = local_files(ctx, studies.instance_files(db, series_id), series_id)
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
