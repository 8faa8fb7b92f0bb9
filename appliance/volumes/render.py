"""Axial, coronal and sagittal slices of a reconstructed volume as 8-bit PNG.

Orientation. A volume's voxel axes (x along a row, y down a column, z along the slice normal,
PS3.3 C.7.6.2.1.1) are first brought to the closest anatomical axes by swapping and flipping
only (nibabel's ``io_orientation`` on the LPS affine; no resampling, so an oblique stack is
shown in the anatomical planes closest to its own). The canonical array is indexed
``[k, j, i]`` with ``i`` from the patient's right to left (+x in LPS), ``j`` from anterior to
posterior (+y) and ``k`` from inferior to superior (+z). Slices are then displayed by the
radiological convention (as OHIF and most PACS viewers do):

* axial: seen from the feet; the patient's right on the image left, anterior at the top.
  ``index`` 0 is the most inferior slice.
* coronal: seen from the front; the patient's right on the image left, superior at the top.
  ``index`` 0 is the most anterior slice.
* sagittal: seen from the patient's left; anterior on the image left, superior at the top.
  ``index`` 0 is the slice furthest to the patient's right.

Aspect ratio. The displayed plane is resampled (bilinear, after windowing) so that one pixel
is the same number of millimetres in both directions: the finer of the two spacings, unless
that would make the image larger than ``MAX_SIDE`` pixels, in which case both directions are
scaled down alike. A sagittal view of 35 slices 4.8 mm apart is therefore as tall as the head.

Grey levels. CT in Hounsfield units takes the OHIF presets of
:data:`appliance.dicom.preview.WINDOW_PRESETS` (soft 400/40, lung 1500/-600, liver 150/90,
bone 2500/480, brain 80/40); ``auto`` (and every preset on MR, PET and anything not in HU)
windows the 1st to 99th percentile of the whole volume, so every slice of a volume is shown
alike while scrolling. Windows are linear (PS3.3 C.11.2.1.3.2, LINEAR_EXACT): ``center -
width/2`` maps to 0 and ``center + width/2`` to 255.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import nibabel.orientations as nibo
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from appliance.dicom.preview import PRESETS, WINDOW_PRESETS, Window

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: Final[tuple[str, ...]] = get_args(Plane)
#: Largest side of a rendered slice, in pixels.
MAX_SIDE: Final = 1024
#: Largest side of a series thumbnail, in pixels.
THUMBNAIL_SIDE: Final = 128
#: Voxels sampled (evenly, deterministically) for the percentile window.
PERCENTILE_SAMPLE: Final = 1_000_000
WindowSource = Literal["preset", "percentiles", "flat", "explicit"]


class SliceOutOfRange(ValueError):
    """The slice index does not exist in that plane."""


@dataclass(frozen=True)
class CanonicalVolume:
    """A volume as ``[k, j, i]`` = (inferior->superior, anterior->posterior, right->left).

    ``spacing`` is (k, j, i) in mm. ``native`` is the plane the slices were acquired in (the
    plane perpendicular to the original slice normal). ``is_hu`` enables the CT presets.
    """

    data: NDArray[Any]
    spacing: tuple[float, float, float]
    native: Plane
    is_hu: bool
    auto: Window | None

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def count(self, plane: Plane) -> int:
        """Number of slices in ``plane``."""
        return int(self.data.shape[{"axial": 0, "coronal": 1, "sagittal": 2}[plane]])


@dataclass(frozen=True)
class RenderedSlice:
    """One slice (8-bit pixels and PNG) with what was shown: plane, index of count, window,
    pixel size."""

    pixels: NDArray[np.uint8]
    png: bytes
    plane: Plane
    index: int
    count: int
    width: int
    height: int
    pixel_mm: float
    source: WindowSource
    preset: str | None
    window: Window | None


def canonical(
    voxels: NDArray[Any], affine_lps: NDArray[np.float64], *, is_hu: bool
) -> CanonicalVolume:
    """Reorient ``voxels`` ((z, y, x), with the LPS voxel-to-mm ``affine_lps`` indexed (x, y, z))
    to the canonical ``[k, j, i]`` order by axis swaps and flips only."""
    if voxels.ndim != 3:
        raise ValueError(f"a volume has 3 dimensions, got {voxels.ndim}")
    affine = np.asarray(affine_lps, dtype=np.float64)
    # ornt[a] = (patient axis, +1/-1) for voxel axis a (x, y, z), in LPS.
    ornt = nibo.io_orientation(affine)  # type: ignore[no-untyped-call]
    spacing_xyz = np.linalg.norm(affine[:3, :3], axis=0)
    data = voxels
    order = [0, 0, 0]
    spacing = [0.0, 0.0, 0.0]
    for voxel_axis in range(3):
        patient_axis = int(ornt[voxel_axis, 0])
        array_axis = 2 - voxel_axis  # voxels are (z, y, x)
        if ornt[voxel_axis, 1] < 0:
            data = np.flip(data, axis=array_axis)
        order[2 - patient_axis] = array_axis  # canonical is (S, P, L) = patient axes 2, 1, 0
        spacing[2 - patient_axis] = float(spacing_xyz[voxel_axis])
    data = np.transpose(data, order)
    native_axis = int(ornt[2, 0])
    native: Plane = ("sagittal", "coronal", "axial")[native_axis]
    return CanonicalVolume(
        data=data,
        spacing=(spacing[0], spacing[1], spacing[2]),
        native=native,
        is_hu=is_hu,
        auto=percentile_window(voxels),
    )


def percentile_window(values: NDArray[Any]) -> Window | None:
    """The window from the 1st to the 99th percentile of ``values`` (an even sample of at most
    :data:`PERCENTILE_SAMPLE` voxels); None when the values are flat or not finite."""
    flat = np.asarray(values).reshape(-1)
    step = max(1, flat.size // PERCENTILE_SAMPLE)
    sample = flat[::step].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    low, high = (float(v) for v in np.percentile(sample, [1.0, 99.0]))
    if not high > low:
        return None
    return Window(width=high - low, center=(high + low) / 2)


def plane_pixels(
    volume: CanonicalVolume, plane: Plane, index: int
) -> tuple[NDArray[Any], float, float]:
    """The 2D array of slice ``index`` of ``plane`` in display orientation, with its row and
    column spacing in mm. Raises :class:`SliceOutOfRange`."""
    count = volume.count(plane)
    if not 0 <= index < count:
        raise SliceOutOfRange(
            f"slice {index} does not exist: the {plane} plane has {count} slices, "
            f"numbered 0 to {count - 1}"
        )
    s_k, s_j, s_i = volume.spacing
    data = volume.data
    if plane == "axial":
        return data[index, :, :], s_j, s_i
    if plane == "coronal":
        return data[::-1, index, :], s_k, s_i
    return data[::-1, :, index], s_k, s_j


def choose_window(
    volume: CanonicalVolume, preset: str
) -> tuple[Window | None, WindowSource, str | None]:
    """The window for ``preset``: a CT preset on HU data, else the volume's percentiles."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    if preset != "auto" and volume.is_hu:
        return WINDOW_PRESETS[preset], "preset", preset
    if volume.auto is None:
        return None, "flat", None
    return volume.auto, "percentiles", None


def to_grey(values: NDArray[Any], window: Window | None) -> NDArray[np.uint8]:
    """Linear window to 0..255 (LINEAR_EXACT); a flat image is black."""
    if window is None:
        return np.zeros(values.shape, dtype=np.uint8)
    low = window.center - window.width / 2
    unit = (np.asarray(values, dtype=np.float32) - np.float32(low)) / np.float32(window.width)
    grey: NDArray[np.uint8] = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return grey


def display_size(
    rows: int, cols: int, row_mm: float, col_mm: float, max_side: int
) -> tuple[int, int, float]:
    """(height, width, mm per pixel) for square pixels of the finer spacing, capped."""
    pixel = min(row_mm, col_mm)
    height_mm, width_mm = rows * row_mm, cols * col_mm
    pixel = max(pixel, max(height_mm, width_mm) / max_side)
    return max(1, round(height_mm / pixel)), max(1, round(width_mm / pixel)), pixel


def render_slice(
    volume: CanonicalVolume,
    plane: Plane,
    index: int,
    preset: str = "auto",
    *,
    max_side: int = MAX_SIDE,
    window: Window | None = None,
) -> RenderedSlice:
    """Slice ``index`` of ``plane`` windowed by ``preset``, with square pixels, as PNG; an
    explicit ``window`` (``appliance.dicom.preview.explicit_window``) overrides the preset."""
    values, row_mm, col_mm = plane_pixels(volume, plane, index)
    source: WindowSource
    applied: str | None
    if window is not None:
        source, applied = "explicit", None
    else:
        window, source, applied = choose_window(volume, preset)
    grey = to_grey(values, window)
    height, width, pixel = display_size(grey.shape[0], grey.shape[1], row_mm, col_mm, max_side)
    image = Image.fromarray(np.ascontiguousarray(grey))
    if (height, width) != grey.shape:
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return RenderedSlice(
        pixels=np.asarray(image, dtype=np.uint8),
        png=_png(image),
        plane=plane,
        index=index,
        count=volume.count(plane),
        width=width,
        height=height,
        pixel_mm=pixel,
        source=source,
        preset=applied,
        window=window,
    )


def middle_slice(volume: CanonicalVolume, plane: Plane | None = None) -> RenderedSlice:
    """The middle slice of ``plane`` (default: the plane the series was acquired in)."""
    chosen = plane or volume.native
    return render_slice(volume, chosen, volume.count(chosen) // 2)


def thumbnail_png(pixels: NDArray[np.uint8], side: int = THUMBNAIL_SIDE) -> bytes:
    """A small PNG of an 8-bit image (grey or RGB), aspect ratio kept, at most ``side`` px."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return _png(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
