"""Original files and previews of instances: the bytes as received and one frame rendered to
PNG, each read audited (refusals too).
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.dicom import preview
from appliance.errors import AppError, Conflict, InvalidInput, NotFound
from appliance.storage.instances import instance_path
from appliance.storage.models import FileUnavailable
from appliance.storage.service import ObjectStore
from appliance.studies.models import (
    InstanceFile,
    PreviewImage,
)
from appliance.studies.rows import (
    select_one,
)


def _stored_instance(
    db: sqlite_utils.Database, store: ObjectStore, instance_id: str
) -> tuple[dict[str, Any], InstanceFile]:
    row = select_one(
        db,
        "SELECT i.id, i.storage_key, i.size, i.sha256, i.storage_state, s.study_id"
        " FROM instances i JOIN series s ON s.id = i.series_id WHERE i.id = ?",
        (instance_id,),
        f"instance {instance_id}",
    )
    path = instance_path(db, store, row["storage_key"])  # an evicted file is fetched back
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
    except (NotFound, Conflict, FileUnavailable) as exc:
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
    except (NotFound, Conflict, FileUnavailable) as exc:
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
        decoder=rendered.decoder,
        markers=rendered.markers,
    )
