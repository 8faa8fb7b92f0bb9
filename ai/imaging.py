"""Model input preparation for MedGemma: CT, MR and radiograph images as JPEG, with the facts
needed to label them, map boxes back and audit them. Pure functions over numpy arrays.

CT (Google's ``high_dimensional_ct_hugging_face`` notebook and the MedGemma 1.5 report, 2.3.1):
at most :data:`MAX_SLICES` slices sampled uniformly along the volume, each turned into RGB with
three Hounsfield windows, R = -1024..1024 (wide), G = -135..215 (soft tissue), B = 0..80 (brain).
A window maps ``low`` to 0 and ``high`` to 255 linearly, values outside are clipped, and the
result is rounded to the nearest integer (half to even), like ``TraditionalWindow`` of Google's
serving code. The notebook samples ``round(i / 85 * (n - 1))`` for ``i = 1..85``, which never
takes the first slice; we take ``i = 0..84`` over ``n - 1`` steps, so the first and the last
slice are always in (see :func:`sample_indices`).

MR: no window; one minimum and maximum over the WHOLE volume (not per slice, so slices stay
comparable) map to 0..255 (rounded), grey replicated to R, G and B; a flat volume is all 255, as
in Google's ``_process_buffered_mri_volume``. Slices are sampled as for CT.

Radiographs (CR, DX): values to 0..255 by the image's own minimum and maximum (8-bit images are
kept as they are), MONOCHROME1 inverted so that bone is bright (PS3.3 C.7.6.3.1.2), then padded
with black to a square exactly as :func:`ai.boxes.square_padding` (centred, the odd pixel at the
bottom/right), so boxes of the padded image map back through the returned padding; optionally
resized to 896 x 896 (``scale`` = output side / padded side).

Images are JPEG, quality :data:`JPEG_QUALITY` (Google's serving default) with 4:4:4 chroma: the
three CT channels are three independent windows, which chroma subsampling would blur into each
other. The same input always gives the same bytes. ``sha256`` is one digest over all images in
order (each preceded by its length as 8 bytes big-endian), for the audit trail.

Volumes come as (z, y, x) arrays in slice order (ascending along the slice normal, PS3.3
C.7.6.2.1.1; feet to head for a standard axial CT), as ``appliance.volumes`` builds them. The
prompt labels the images ``SLICE 1``, ``SLICE 2``, ... in this order (the 1-based position in
the prompt, not the index in the volume, which ``slice_index`` keeps).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ai.boxes import SquarePadding, square_padding

MAX_SLICES: Final = 85
JPEG_QUALITY: Final = 95
MODEL_SIDE: Final = 896
MEDIA_TYPE: Final = "image/jpeg"


@dataclass(frozen=True, slots=True)
class HUWindow:
    """A window from ``low`` to ``high`` Hounsfield units (``low`` -> 0, ``high`` -> 255)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"window high ({self.high}) must exceed low ({self.low})")

    @property
    def center(self) -> float:
        return (self.low + self.high) / 2

    @property
    def width(self) -> float:
        return self.high - self.low


#: R, G, B windows of MedGemma 1.5's CT input.
CT_WINDOWS: Final = (HUWindow(-1024, 1024), HUWindow(-135, 215), HUWindow(0, 80))


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """One model image: JPEG bytes, where it comes from and how the prompt labels it."""

    data: bytes
    width: int
    height: int
    number: int  # 1-based position in the prompt
    slice_index: int | None  # index in the volume (z); None for a radiograph
    label: str | None  # "SLICE n" for volume slices, None for a radiograph
    media_type: str = MEDIA_TYPE


@dataclass(frozen=True, slots=True)
class PreparedImages:
    """What was sent to the model, in prompt order, and the facts to audit and map back."""

    kind: Literal["ct", "mr", "radiograph"]
    images: tuple[PreparedImage, ...]
    sha256: str
    slice_count: int | None = None  # slices in the volume
    windows: tuple[HUWindow, ...] | None = None  # CT: R, G, B
    value_range: tuple[float, float] | None = None  # MR / radiograph: min and max mapped
    inverted: bool = False  # radiograph: MONOCHROME1 inverted
    padding: SquarePadding | None = None  # radiograph
    scale: float = 1.0  # radiograph: output side / padded side

    @property
    def slice_indices(self) -> list[int]:
        return [i.slice_index for i in self.images if i.slice_index is not None]


def sample_indices(count: int, max_slices: int = MAX_SLICES) -> list[int]:
    """Indices of at most ``max_slices`` slices spread uniformly over ``count``, first and last
    included: ``floor(i * (count - 1) / (max_slices - 1) + 1/2)`` for ``i = 0..max_slices-1``
    (exact integer arithmetic, strictly increasing); every index when ``count <= max_slices``."""
    if count < 1:
        raise ValueError("a volume needs at least one slice")
    if max_slices < 1:
        raise ValueError("max_slices must be at least 1")
    if count <= max_slices:
        return list(range(count))
    if max_slices == 1:
        return [(count - 1) // 2]
    steps = max_slices - 1
    return [(2 * i * (count - 1) + steps) // (2 * steps) for i in range(max_slices)]


def apply_window(values: NDArray[Any], window: HUWindow) -> NDArray[np.uint8]:
    """``low`` -> 0, ``high`` -> 255, linear between, clipped outside, rounded half to even."""
    unit = (np.asarray(values, dtype=np.float64) - window.low) / window.width
    out: NDArray[np.uint8] = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


def ct_rgb(slice_hu: NDArray[Any], windows: Sequence[HUWindow] = CT_WINDOWS) -> NDArray[np.uint8]:
    """One CT slice in HU (rows, cols) to RGB (rows, cols, 3), one window per channel."""
    if len(windows) != 3:
        raise ValueError("three windows are needed, one per channel")
    return np.stack([apply_window(slice_hu, w) for w in windows], axis=-1)


def encode_jpeg(pixels: NDArray[np.uint8], quality: int = JPEG_QUALITY) -> bytes:
    """RGB (rows, cols, 3) or grey to JPEG bytes, 4:4:4, baseline; deterministic."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, subsampling=0, optimize=False)
    return out.getvalue()


def images_sha256(images: Sequence[bytes]) -> str:
    """SHA-256 over the images in order, each preceded by its length (8 bytes, big-endian)."""
    digest = hashlib.sha256()
    for data in images:
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _check_volume(voxels: NDArray[Any]) -> None:
    if voxels.ndim != 3 or min(voxels.shape) < 1:
        raise ValueError(f"a volume is a non-empty (z, y, x) array, got shape {voxels.shape}")


def _slices(
    rgb_of: Any, voxels: NDArray[Any], max_slices: int, quality: int
) -> tuple[PreparedImage, ...]:
    images = []
    for number, index in enumerate(sample_indices(voxels.shape[0], max_slices), start=1):
        rgb = rgb_of(voxels[index])
        images.append(
            PreparedImage(
                data=encode_jpeg(rgb, quality),
                width=int(rgb.shape[1]),
                height=int(rgb.shape[0]),
                number=number,
                slice_index=index,
                label=f"SLICE {number}",
            )
        )
    return tuple(images)


def prepare_ct(
    voxels_hu: NDArray[Any],
    *,
    max_slices: int = MAX_SLICES,
    windows: Sequence[HUWindow] = CT_WINDOWS,
    quality: int = JPEG_QUALITY,
) -> PreparedImages:
    """CT volume in HU, (z, y, x) -> at most ``max_slices`` RGB JPEG slices (R/G/B windows)."""
    _check_volume(voxels_hu)
    chosen = tuple(windows)
    images = _slices(lambda s: ct_rgb(s, chosen), voxels_hu, max_slices, quality)
    return PreparedImages(
        kind="ct",
        images=images,
        sha256=images_sha256([i.data for i in images]),
        slice_count=int(voxels_hu.shape[0]),
        windows=chosen,
    )


def prepare_mr(
    voxels: NDArray[Any], *, max_slices: int = MAX_SLICES, quality: int = JPEG_QUALITY
) -> PreparedImages:
    """MR volume (z, y, x) -> grey (one global min/max to 0..255) replicated to RGB JPEGs."""
    _check_volume(voxels)
    low, high = float(np.min(voxels)), float(np.max(voxels))

    def grey(values: NDArray[Any]) -> NDArray[np.uint8]:
        if high == low:
            return np.full((*values.shape, 3), 255, dtype=np.uint8)
        level = np.rint((np.asarray(values, np.float64) - low) / (high - low) * 255.0)
        g = level.astype(np.uint8)
        return np.stack([g, g, g], axis=-1)

    images = _slices(grey, voxels, max_slices, quality)
    return PreparedImages(
        kind="mr",
        images=images,
        sha256=images_sha256([i.data for i in images]),
        slice_count=int(voxels.shape[0]),
        value_range=(low, high),
    )


def to_uint8(pixels: NDArray[Any]) -> tuple[NDArray[np.uint8], tuple[float, float]]:
    """A 2D image to 0..255 by its own minimum and maximum (uint8 kept); the range used."""
    values = np.asarray(pixels)
    if values.dtype == np.uint8:
        return values, (0.0, 255.0)
    low, high = float(np.min(values)), float(np.max(values))
    if high == low:
        return np.zeros(values.shape, dtype=np.uint8), (low, high)
    scaled = np.rint((values.astype(np.float64) - low) / (high - low) * 255.0)
    return scaled.astype(np.uint8), (low, high)


def pad_to_square(
    pixels: NDArray[np.uint8], fill: int = 0
) -> tuple[NDArray[np.uint8], SquarePadding]:
    """Pad a 2D or RGB image with ``fill`` to a square, as :func:`ai.boxes.square_padding`."""
    rows, cols = int(pixels.shape[0]), int(pixels.shape[1])
    padding = square_padding(rows, cols)
    shape = (padding.side, padding.side, *pixels.shape[2:])
    out = np.full(shape, fill, dtype=np.uint8)
    out[padding.pad_top : padding.pad_top + rows, padding.pad_left : padding.pad_left + cols] = (
        pixels
    )
    return out, padding


def prepare_radiograph(
    pixels: NDArray[Any],
    *,
    monochrome1: bool = False,
    side: int | None = MODEL_SIDE,
    quality: int = JPEG_QUALITY,
) -> PreparedImages:
    """A CR/DX image (rows, cols) -> one square RGB JPEG; ``padding`` and ``scale`` map boxes
    back (a box in the output is in padded-square coordinates times ``scale``)."""
    values = np.asarray(pixels)
    if values.ndim != 2 or min(values.shape) < 1:
        raise ValueError(f"a radiograph is a non-empty 2D array, got shape {values.shape}")
    grey, value_range = to_uint8(values)
    if monochrome1:
        grey = np.subtract(np.uint8(255), grey)
    square, padding = pad_to_square(grey)
    scale = 1.0
    image = Image.fromarray(square)
    if side is not None and side != padding.side:
        scale = side / padding.side
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    data = encode_jpeg(rgb, quality)
    prepared = PreparedImage(
        data=data,
        width=int(rgb.shape[1]),
        height=int(rgb.shape[0]),
        number=1,
        slice_index=None,
        label=None,
    )
    return PreparedImages(
        kind="radiograph",
        images=(prepared,),
        sha256=images_sha256([data]),
        value_range=value_range,
        inverted=monochrome1,
        padding=padding,
        scale=scale,
    )
