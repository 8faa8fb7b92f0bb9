"""The ``volumes`` table and the index reads a build needs: rows as ``VolumeOut``, JSON
columns, the input fingerprint, whether stored volumes are current, the local instance files,
and swapping a series' rows in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.connection import transaction
from appliance.db.rows import fetch_all as _rows
from appliance.errors import Conflict, NotFound
from appliance.logs import get_logger
from appliance.storage.instances import instance_path
from appliance.studies import service as studies
from appliance.volumes.models import (
    QANoteOut,
    VolumeOut,
)
from appliance.volumes.reconstruct import (
    VolumeResult,
)

log = get_logger("radiant.volumes")

#: Part of every fingerprint: bump it when the reconstruction changes its output.
BUILDER_VERSION = "1"


PREFIX = "volumes"


def json_column(text: str | None) -> Any:
    """A JSON column's value, None when empty."""
    return json.loads(text) if text else None


def volume_out(row: dict[str, Any]) -> VolumeOut:
    """A ``volumes`` row as a VolumeOut."""
    return VolumeOut(
        id=row["id"],
        series_id=row["series_id"],
        ordinal=int(row["ordinal"] or 0),
        label=row["label"],
        status=row["status"],
        reason=row["reason"],
        error=row["error"],
        shape=json_column(row["shape"]),
        spacing=json_column(row["spacing"]),
        origin=json_column(row["origin"]),
        direction=json_column(row["direction"]),
        dtype=row["dtype"],
        qa_notes=[QANoteOut(**n) for n in (json_column(row["qa_notes"]) or [])],
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


def dumps(value: Any) -> str:
    """Compact JSON that also takes numpy values and tuples."""
    return json.dumps(value, default=_jsonable, separators=(",", ":"))


def notes_of(result: VolumeResult) -> list[dict[str, Any]]:
    """The QA notes of a result as JSON-ready ``{code, text, details}``."""
    return [
        json.loads(dumps({"code": n.code, "text": n.text, "details": n.details}))
        for n in result.notes
    ]


def volume_row(db: sqlite_utils.Database, volume_id: str) -> dict[str, Any]:
    """The ``volumes`` row with its series' modality and study; NotFound when unknown."""
    rows = _rows(db, "SELECT * FROM volumes WHERE id = ?", (volume_id,))
    series = studies.series_ref(db, rows[0]["series_id"]) if rows else None
    if series is None:
        raise NotFound(f"volume {volume_id} not found")
    return {**rows[0], "modality": series.modality, "study_id": series.study_id}


def fingerprint(instances: list[studies.InstanceFile]) -> str:
    """SHA-256 over :data:`BUILDER_VERSION` and every (SOP Instance UID, content SHA-256)."""
    digest = hashlib.sha256(f"radiant-volumes/{BUILDER_VERSION}\n".encode())
    for uid, sha in sorted((r.sop_instance_uid, r.sha256) for r in instances):
        digest.update(f"{uid}:{sha}\n".encode())
    return digest.hexdigest()


def stored_volumes(db: sqlite_utils.Database, series_id: str) -> list[dict[str, Any]]:
    """The series' volume rows by ordinal."""
    return _rows(db, "SELECT * FROM volumes WHERE series_id = ? ORDER BY ordinal", (series_id,))


def current_volumes(db: sqlite_utils.Database, series_id: str) -> list[VolumeOut] | None:
    """The series' volumes when they were built from its current instances and none failed;
    None when there are none, they are stale, or a build failed (worth another try)."""
    rows = stored_volumes(db, series_id)
    if not rows or any(r["status"] == "failed" for r in rows):
        return None
    current = fingerprint(studies.instance_files(db, series_id))
    if any(r["fingerprint"] != current for r in rows):
        return None
    return [volume_out(r) for r in rows]


def local_files(
    ctx: AppContext, instances: list[studies.InstanceFile], series_id: str
) -> list[Path]:
    """The paths of the series' instance files, evicted ones fetched back first (409/503 when
    they cannot be); Conflict when any is missing."""
    if not instances:
        raise Conflict(f"series {series_id} has no instances")
    db = ctx.pool.get()
    paths = [instance_path(db, ctx.store, r.storage_key) for r in instances]
    missing = sum(1 for p in paths if not p.is_file())
    if missing:
        raise Conflict(
            f"{missing} instance files of series {series_id} are missing from storage; "
            "run `radiant fsck`"
        )
    return paths


def volume_key(series_id: str, volume_id: str) -> str:
    """The object key of a volume's NIfTI."""
    return f"{PREFIX}/{series_id}/{volume_id}.nii.gz"


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


def replace_rows(
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


def remove_unreferenced(ctx: AppContext, series_id: str, keep: set[Any], old: list[str]) -> None:
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


def _size_rank(shape: list[int] | None, ordinal: int) -> tuple[int, int]:
    """Most voxels first; on a tie, the lowest ordinal."""
    return (int(np.prod(shape or [0])), -ordinal)


def main_volume(built: list[VolumeOut]) -> VolumeOut | None:
    """The volume that stands for a series: its largest ready one (most voxels, the lowest
    ordinal on a tie), as :func:`largest_ready` picks it for the key image and thumbnail;
    None when none is ready."""
    ready = [v for v in built if v.status == "ready"]
    return max(ready, key=lambda v: _size_rank(v.shape, v.ordinal)) if ready else None


def volume_file(ctx: AppContext, volume_id: str) -> Path:
    """Where a stored volume's NIfTI is (not audited: for the services that read it, such as
    the analysis); NotFound for an unknown volume, Conflict for one without a file."""
    row = volume_row(ctx.pool.get(), volume_id)
    if not row["storage_key"]:
        raise Conflict(f"volume {volume_id} has no file")
    return ctx.store.path(row["storage_key"])


def largest_ready(db: sqlite_utils.Database, series_id: str) -> dict[str, Any] | None:
    """The series' largest ready volume row (see :func:`main_volume`), None when none is ready."""
    rows = _rows(
        db,
        "SELECT * FROM volumes WHERE series_id = ? AND status = 'ready' ORDER BY ordinal",
        (series_id,),
    )
    series = studies.series_ref(db, series_id) if rows else None
    if series is None:
        return None
    rows = [{**row, "modality": series.modality} for row in rows]
    return max(rows, key=lambda r: _size_rank(json_column(r["shape"]), r["ordinal"]))
