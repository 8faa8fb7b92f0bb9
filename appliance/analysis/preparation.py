"""Preparing a series for the model: a CT/MR volume (built if needed) sampled to at most 85
slices, or one radiograph padded to a square, with the links back to its instances.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from ai.imaging import PreparedImages, images_sha256, prepare_ct, prepare_mr, prepare_radiograph
from appliance.analysis.radiograph import (
    RADIOGRAPH_MODALITIES,
    NotARadiograph,
    Spacing,
    read_radiograph,
    read_view_position,
    view_rank,
)
from appliance.analysis.store import SYSTEM
from appliance.context import AppContext
from appliance.errors import AppError, NotFound
from appliance.jobs.models import JobFailed
from appliance.storage.instances import instance_path
from appliance.storage.models import FileUnavailable
from appliance.studies import service as studies
from appliance.volumes import service as volumes
from appliance.volumes.nifti import NiftiVolume, read_nifti

VOLUME_MODALITIES = frozenset({"CT", "MR"})


@dataclasses.dataclass(slots=True)
class Prepared:
    """One series' model images and what is needed to map answers back to it.

    ``image_instance`` maps a 0-based image position in ``images`` to (instance id, 0-based
    index in the series' display order). CT/MR keep the volume's ``affine`` (LPS, mm) and
    ``shape`` (z, y, x); a radiograph keeps its ``spacing`` (its padding is in ``images``).
    """

    series_id: str
    modality: str
    images: PreparedImages
    shape: tuple[int, ...]
    image_instance: dict[int, tuple[str, int]]
    affine: np.ndarray[Any, Any] | None = None
    spacing: Spacing | None = None
    burned_in: bool = False  # an image has Burned In Annotation YES (see analysis.egress)

    def focused(self) -> Prepared:
        """The same series reduced to the one image a focused prompt shows: a radiograph's only
        image, or the middle sampled slice of a volume."""
        if len(self.images.images) == 1:
            return self
        position = len(self.images.images) // 2
        image = dataclasses.replace(self.images.images[position], number=1, label=None)
        images = dataclasses.replace(
            self.images, images=(image,), sha256=images_sha256([image.data])
        )
        link = self.image_instance.get(position)
        return dataclasses.replace(self, images=images, image_instance={0: link} if link else {})


def prepare_series(ctx: AppContext, series_id: str, job_id: str | None) -> Prepared:
    """Turn a series into model images: a CT/MR volume (built if needed) or one radiograph."""
    db = ctx.pool.get()
    modality = str(studies.series_modality(db, series_id) or "").upper()
    if modality in RADIOGRAPH_MODALITIES:
        return _prepare_radiograph(ctx, series_id, modality)
    if modality not in VOLUME_MODALITIES:
        raise JobFailed(f"modality {modality or 'unknown'} is not analysed (CT, MR, CR and DX are)")
    return _prepare_volume(ctx, series_id, modality, job_id)


#: How many times a volume replaced between choosing and reading it is chosen again.
VOLUME_TRIES = 3


def _read_main_volume(ctx: AppContext, series_id: str, job_id: str | None) -> NiftiVolume:
    """The series' main volume, built if needed. A rebuild (the automatic one at stability)
    may replace the series' volumes and remove their files between choosing one and reading
    it (the volumes service's replace rule): the new set is chosen again, a bounded number of
    times. The same volume found without its file twice has lost it (volumes are derived
    data): the series' volumes are built again."""
    missing: set[str] = set()
    rebuild = False
    for _ in range(VOLUME_TRIES):
        try:
            if rebuild:
                built = volumes.build_for_series(ctx, series_id, SYSTEM, job_id=job_id)
            else:
                built, _ = volumes.current_or_build(ctx, series_id, SYSTEM, job_id=job_id)
        except AppError as exc:
            raise JobFailed(exc.detail) from None
        chosen = volumes.main_volume(built)
        if chosen is None:
            reason = next((v.reason or v.error for v in built if v.reason or v.error), None)
            raise JobFailed(f"series {series_id} has no volume" + (f": {reason}" if reason else ""))
        try:
            return read_nifti(volumes.volume_file(ctx, chosen.id))
        except (NotFound, FileNotFoundError):
            rebuild = chosen.id in missing
            missing.add(chosen.id)
        except AppError as exc:
            raise JobFailed(exc.detail) from None
    raise JobFailed(f"the volumes of series {series_id} kept being rebuilt; try again")


def _prepare_volume(ctx: AppContext, series_id: str, modality: str, job_id: str | None) -> Prepared:
    db = ctx.pool.get()
    volume = _read_main_volume(ctx, series_id, job_id)
    voxels = np.asarray(volume.voxels)
    images = prepare_ct(voxels) if modality == "CT" else prepare_mr(voxels)
    affine = np.asarray(volume.affine_lps, dtype=np.float64)
    inverse = np.linalg.inv(affine)
    positions: list[tuple[float, str, int]] = []
    for order, inst in enumerate(studies.instances_in_display_order(db, series_id)):
        if not inst.image_position:
            continue
        ipp = json.loads(inst.image_position)
        z = float((inverse @ np.array([*map(float, ipp[:3]), 1.0]))[2])
        positions.append((z, inst.id, order))
    image_instance: dict[int, tuple[str, int]] = {}
    if positions:
        for position, image in enumerate(images.images):
            z_index = image.slice_index
            if z_index is None:
                continue
            _, instance_id, order = min(positions, key=lambda p: abs(p[0] - z_index))
            image_instance[position] = (instance_id, order)
    return Prepared(
        series_id=series_id,
        modality=modality,
        images=images,
        shape=tuple(int(n) for n in voxels.shape),
        image_instance=image_instance,
        affine=affine,
    )


def _prepare_radiograph(ctx: AppContext, series_id: str, modality: str) -> Prepared:
    db = ctx.pool.get()
    ordered = studies.instances_in_display_order(db, series_id)
    if not ordered:
        raise JobFailed(f"series {series_id} has no instances")
    try:  # evicted images are fetched back from the bucket first
        paths = [
            (order, row, instance_path(db, ctx.store, row.storage_key))
            for order, row in enumerate(ordered)
        ]
    except FileUnavailable as exc:
        raise JobFailed(exc.detail) from None
    local = [(order, row, path) for order, row, path in paths if path.is_file()]
    if not local:
        raise JobFailed(
            f"no image of series {series_id} is kept on this appliance (missing; "
            "run `radiant fsck`)"
        )
    order, chosen, chosen_path = min(
        local, key=lambda item: (view_rank(read_view_position(item[2])), item[0])
    )
    try:
        radiograph = read_radiograph(chosen_path)
    except NotARadiograph as exc:
        raise JobFailed(f"instance {chosen.id} cannot be analysed: {exc}") from None
    images = prepare_radiograph(radiograph.pixels, monochrome1=radiograph.inverted_here)
    images = dataclasses.replace(images, inverted=radiograph.monochrome1)
    return Prepared(
        series_id=series_id,
        modality=modality,
        images=images,
        shape=tuple(int(n) for n in radiograph.pixels.shape),
        image_instance={0: (chosen.id, order)},
        spacing=radiograph.spacing,
        burned_in=radiograph.burned_in,
    )
