"""Resampling one slice at a time: in-plane shifts that undo a gantry tilt (linear
interpolation onto an orthogonal, widened grid) and the bracketing slices and weights of a
uniform grid along the normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.volumes import geometry
from appliance.volumes.frames.base import Frame
from appliance.volumes.pixels import PixelReader
from appliance.volumes.rescale import rescaled
from appliance.volumes.results import FloatArray


@dataclass(frozen=True, slots=True)
class AxisShift:
    """Slice k moves by ``pixels[k]`` along one in-plane axis (0: y, down a column; 1: x).

    The output axis (``size`` long) holds every shifted slice and stays aligned with the pixel
    lattice of slices whose shift is an integer (the first slice: shift 0); ``first`` is the
    index, in the old lattice, of its first pixel (<= 0).
    """

    axis: int
    pixels: FloatArray
    first: int
    size: int


def shear_plan(
    offsets_mm: FloatArray, spacing_xy: tuple[float, float], first: Frame
) -> list[AxisShift]:
    """The in-plane shifts that undo a shear: slice k moves by its IPP offset (mm) from the
    first slice, along x and then along y."""
    plan = []
    for axis, column, size in ((1, 0, first.columns), (0, 1, first.rows)):
        pixels = offsets_mm[:, column] / spacing_xy[column]
        if np.max(np.abs(pixels)) > 1e-6:
            low = math.floor(float(pixels.min()) + 1e-6)
            high = math.ceil(float(pixels.max()) - 1e-6)
            plan.append(AxisShift(axis, pixels, low, size + high - low))
    return plan


def _shift_slice(image: FloatArray, k: int, shift: AxisShift, fill: float) -> FloatArray:
    """Slice ``k`` shifted: linear interpolation between the two neighbouring source pixels;
    positions outside the source get ``fill``."""
    size = image.shape[shift.axis]
    shape = list(image.shape)
    shape[shift.axis] = shift.size
    out = np.full(shape, fill, dtype=np.float64)
    source = np.arange(shift.size, dtype=np.float64) + shift.first - shift.pixels[k]
    valid = (source >= 0) & (source < size)
    low = np.floor(source[valid]).astype(np.intp)
    high = np.minimum(low + 1, size - 1)
    fraction = source[valid] - low
    # low * (1 - fraction) + high * fraction, in place: two slice-sized temporaries, not five.
    if shift.axis == 0:
        before, after = image[low, :], image[high, :]
        before *= (1 - fraction)[:, None]
        after *= fraction[:, None]
        before += after
        out[valid, :] = before
    else:
        before, after = image[:, low], image[:, high]
        before *= (1 - fraction)[None, :]
        after *= fraction[None, :]
        before += after
        out[:, valid] = before
    return out


class Sources:
    """A stack's frames for resampling, rescaled (float64) and shifted one slice at a time.

    A first pass decodes every frame for the smallest value (the fill of the border widened by
    a shift) and keeps the stored values of the first frames, in their decoded dtype, up to
    ``budget`` bytes; the others are decoded again when needed. The last two results are
    cached (resampling reads neighbouring slices in increasing order).
    """

    def __init__(
        self,
        frames: list[Frame],
        reader: PixelReader,
        keep_stored: bool,
        shifts: list[AxisShift],
        budget: int,
    ) -> None:
        self.frames = frames
        self.pixels = reader
        self.keep_stored = keep_stored
        self.shifts = shifts
        self.kept: dict[int, NDArray[Any]] = {}
        used, fill = 0, math.inf
        for k, frame in enumerate(frames):
            pixels = self.pixels.frame(frame)
            fill = min(fill, float(rescaled(pixels, frame, self.keep_stored).min()))
            if used + pixels.nbytes <= budget:
                self.kept[k] = np.array(pixels, copy=True)
                used += pixels.nbytes
        self.pixels.forget()
        self.fill = fill
        self._cache: dict[int, FloatArray] = {}

    def slice(self, k: int) -> FloatArray:
        """Frame ``k`` rescaled and shifted; do not modify the result."""
        cached = self._cache.get(k)
        if cached is not None:
            return cached
        stored = self.kept.get(k)
        if stored is None:
            stored = self.pixels.frame(self.frames[k])
        image = rescaled(stored, self.frames[k], self.keep_stored)
        for shift in self.shifts:
            image = _shift_slice(image, k, shift, self.fill)
        if len(self._cache) >= 2:
            self._cache.pop(min(self._cache))
        self._cache[k] = image
        return image


def resample_plan(
    distances: FloatArray, grid: geometry.UniformGrid
) -> tuple[NDArray[np.intp], NDArray[np.intp], FloatArray]:
    """For each slice of the uniform grid: the two bracketing source slices (low, high) and
    the weight of the high one (linear interpolation along the normal)."""
    targets = distances[0] + np.arange(grid.count) * grid.spacing
    high = np.clip(np.searchsorted(distances, targets - 1e-9, side="left"), 1, len(distances) - 1)
    low = high - 1
    span = distances[high] - distances[low]
    weight = np.clip((targets - distances[low]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    return low, high, weight
