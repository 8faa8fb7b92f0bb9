"""Siemens mosaics: the tiles of one image unpacked into slices, placed along the CSA slice
normal (the layout nibabel and dcm2niix use).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from appliance.volumes import geometry
from appliance.volumes.frames.base import Frame, int_value
from appliance.volumes.frames.classic import classic_frame
from appliance.volumes.results import MOSAIC_UNPACKED, QANote


def mosaic_count(dataset: Dataset) -> int:
    """Number of slices in a Siemens mosaic image (0 if the image is not a mosaic)."""
    image_type = [str(v).upper() for v in (dataset.get("ImageType") or [])]
    if "MOSAIC" not in image_type:
        return 0
    csa = _siemens_csa(dataset)
    count = csa.get("NumberOfImagesInMosaic") if csa else None
    if not count:
        count = (
            int_value(dataset.get((0x0019, 0x100A)).value) if (0x0019, 0x100A) in dataset else None
        )
    return int(count or 0)


def _siemens_csa(dataset: Dataset) -> dict[str, Any] | None:
    """Siemens CSA image header fields used for mosaics (NumberOfImagesInMosaic, normal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader

        try:
            header = csareader.get_csa_header(dataset, "image")  # type: ignore[no-untyped-call]
        except Exception:  # a malformed private header is treated as absent
            return None
        if not header:
            return None
        fields: dict[str, Any] = {}
        try:
            fields["NumberOfImagesInMosaic"] = csareader.get_n_mosaic(header)  # type: ignore[no-untyped-call]
            normal = csareader.get_slice_normal(header)  # type: ignore[no-untyped-call]
            fields["SliceNormalVector"] = None if normal is None else np.asarray(normal, float)
        except Exception:
            return None
        return fields


def mosaic_frames(
    dataset: Dataset, file_order: int, count: int, notes: list[QANote]
) -> list[Frame]:
    """Tiles of a Siemens mosaic as slices (the layout nibabel and dcm2niix use).

    The mosaic's IPP refers to the whole mosaic matrix; the first tile's position is shifted by
    half the difference between mosaic and tile size. Tiles step along the CSA slice normal by
    Spacing Between Slices (mosaics carry no per-slice position).
    """
    tiles_per_side = math.ceil(math.sqrt(count))
    base = classic_frame(dataset, file_order * 1_000_000)
    rows, columns = base.rows // tiles_per_side, base.columns // tiles_per_side
    if base.orientation is None or base.position is None or base.pixel_spacing is None:
        return [base]
    direction = geometry.direction_cosines(base.orientation)
    csa = _siemens_csa(dataset) or {}
    normal = csa.get("SliceNormalVector")
    if normal is None:
        normal = direction[:, 2]
    step = base.thickness or 1.0
    row_spacing, column_spacing = base.pixel_spacing
    first = (
        base.position
        + direction[:, 1] * row_spacing * (base.rows - rows) / 2
        + direction[:, 0] * column_spacing * (base.columns - columns) / 2
    )
    frames = []
    for index in range(count):
        frame = classic_frame(dataset, file_order * 1_000_000 + index)
        frame.tile = (index // tiles_per_side, index % tiles_per_side)
        frame.rows, frame.columns = rows, columns
        frame.position = first + index * step * np.asarray(normal, dtype=np.float64)
        frame.instance = None
        frames.append(frame)
    if not any(note.code == MOSAIC_UNPACKED for note in notes):
        notes.append(
            QANote(
                MOSAIC_UNPACKED,
                f"Siemens mosaic of {count} slices unpacked ({tiles_per_side}x{tiles_per_side} "
                f"tiles of {columns}x{rows}); slice positions follow the CSA slice normal at "
                f"{step:g} mm.",
                {"slices": count, "tiles_per_side": tiles_per_side},
            )
        )
    return frames
