"""Reading volumes: geometry and QA notes, the NIfTI file, slices rendered as PNG from a cache
of decoded volumes, the key image and series thumbnails; every read audited.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.dicom import preview
from appliance.errors import AppError, Conflict, InvalidInput, NotFound
from appliance.storage.instances import instance_path
from appliance.storage.models import FileUnavailable
from appliance.studies import service as studies
from appliance.volumes import render
from appliance.volumes.models import (
    NiftiFile,
    VolumeOut,
)
from appliance.volumes.nifti import read_nifti
from appliance.volumes.reconstruct import (
    RESCALE_NOT_HU,
    STORED_VALUES_NOT_HU,
)
from appliance.volumes.records import (
    json_column,
    largest_ready,
    stored_volumes,
    volume_out,
    volume_row,
)

#: Decoded volumes kept in memory for scrolling (bytes of voxels); the newest always stays.
CACHE_BYTES = 512 * 1024 * 1024


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
        row = volume_row(db, volume_id)
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
    return volume_out(row)


def series_volumes(db: sqlite_utils.Database, series_id: str, actor: Actor) -> list[VolumeOut]:
    """The volumes of a series by ordinal (empty before the first build); ``volume.list``."""
    try:
        studies.require_series(db, series_id)
    except NotFound as exc:
        _audit_miss(db, actor, "volume.list", "series", series_id, exc)
        raise
    found = [volume_out(r) for r in stored_volumes(db, series_id)]
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
        row = volume_row(db, volume_id)
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
    codes = {n["code"] for n in (json_column(row["qa_notes"]) or [])}
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
        row = volume_row(db, volume_id)
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


def key_image(ctx: AppContext, series_id: str, actor: Actor) -> render.RenderedSlice:
    """The middle slice, in the acquisition plane, of the series' largest ready volume;
    audited ``volume.key_image``. Conflict when the series has no ready volume."""
    db = ctx.pool.get()
    try:
        studies.require_series(db, series_id)
        row = largest_ready(db, series_id)
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
        studies.require_series(db, series_id)
        row = largest_ready(db, series_id)
        if row is not None:
            rendered = render.middle_slice(_canonical(ctx, row))
            png = render.thumbnail_png(rendered.pixels)
            source = {"volume_id": row["id"]}
        else:
            png, source = _instance_thumbnail(ctx, db, series_id)
    except (NotFound, Conflict, InvalidInput, FileUnavailable) as exc:
        _audit_miss(db, actor, "series.thumbnail", "series", series_id, exc)
        raise
    audit.record(
        db, actor, "series.thumbnail", object_type="series", object_id=series_id, detail=source
    )
    return png


def _instance_thumbnail(
    ctx: AppContext, db: sqlite_utils.Database, series_id: str
) -> tuple[bytes, dict[str, Any]]:
    instances = studies.instance_files(db, series_id)
    if not instances:
        raise Conflict(f"series {series_id} has no instances")
    middle = instances[len(instances) // 2]
    frames = int(middle.number_of_frames or 1)
    path = instance_path(db, ctx.store, middle.storage_key)  # fetched back when evicted
    if not path.is_file():
        raise Conflict(f"the middle image of series {series_id} is missing; run `radiant fsck`")
    try:
        rendered = preview.render(path, frame=frames // 2)
    except preview.NotRenderable as exc:
        raise InvalidInput(exc.reason) from None
    return render.thumbnail_png(rendered.pixels), {"instance_id": middle.id}
