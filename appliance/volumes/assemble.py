"""Assembly: sorted, gap-free slices become one volume (allocated once in its output dtype
and filled slice by slice, through tilt correction and spacing resampling when needed), and
a lone image becomes a 2D result flagged ``not_a_volume``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.volumes import geometry
from appliance.volumes.frames.base import Frame
from appliance.volumes.pixels import PixelReader
from appliance.volumes.resample import AxisShift, Sources, resample_plan, shear_plan
from appliance.volumes.rescale import is_integral, rescaled, to_output_dtype
from appliance.volumes.results import (
    GANTRY_TILT_CORRECTED,
    NOT_A_VOLUME,
    VARIABLE_SPACING_RESAMPLED,
    FloatArray,
    QANote,
    VolumeResult,
)


@dataclass(slots=True)
class BuildContext:
    """What every step of one series' build shares: the pixel reader, the value rule, the series
    identity and notes."""

    pixels: PixelReader
    keep_stored: bool
    modality: str
    series_uid: str
    series_notes: list[QANote]


# Stored values kept between the two passes of a resampled stack, as a fraction of its output.
_SOURCE_BUDGET = 0.5


def single_image(frame: Frame, context: BuildContext, reason: str) -> VolumeResult:
    """One image as a 2D result flagged ``not_a_volume`` with ``reason``."""
    values = rescaled(context.pixels.frame(frame), frame, context.keep_stored)
    direction = geometry.direction_cosines(frame.orientation) if frame.orientation else np.eye(3)
    row_spacing, column_spacing = frame.pixel_spacing or (1.0, 1.0)
    origin = frame.position if frame.position is not None else np.zeros(3)
    label = f"image {frame.instance}" if frame.instance is not None else "image"
    if frame.frame_index is not None:
        label = f"{label} frame {frame.frame_index + 1}"
    return VolumeResult(
        voxels=to_output_dtype(values[np.newaxis], is_integral([frame], context.keep_stored)),
        origin=triple(origin),
        spacing=(column_spacing, row_spacing, frame.thickness or 1.0),
        direction=direction,
        notes=[*context.series_notes, QANote(NOT_A_VOLUME, reason)],
        label=label,
        modality=context.modality,
        series_instance_uid=context.series_uid,
        frame_count=1,
    )


def triple(values: Sequence[float] | FloatArray) -> tuple[float, float, float]:
    """Three numbers as a tuple of floats."""
    return (float(values[0]), float(values[1]), float(values[2]))


def assemble(
    frames: list[Frame],
    direction: FloatArray,
    notes: list[QANote],
    label: str,
    context: BuildContext,
) -> VolumeResult:
    """Stack sorted, gap-free slices; correct tilt and variable spacing by resampling.

    The voxels are allocated once, in the output dtype, and filled one slice at a time: a
    plain stack straight from each decoded frame; a tilted or variably spaced one from the
    stored values of its frames (kept compact, as decoded) through one-slice float buffers.
    """
    first = frames[0]
    row_spacing, column_spacing = first.pixel_spacing or (1.0, 1.0)
    positions = np.array([f.position for f in frames], dtype=np.float64)
    distances = positions @ direction[:, 2]
    distances = distances - distances[0]
    steps = np.diff(distances)
    tilted = geometry.is_tilted(positions, direction, (column_spacing, row_spacing))
    variable = geometry.is_variable_spacing(steps)
    output = _Output(is_integral(frames, context.keep_stored))
    origin = positions[0].copy()
    notes = list(notes)
    if not tilted and not variable:
        output.allocate((len(frames), first.rows, first.columns))
        for k, frame in enumerate(frames):
            output.put(k, _slice_values(context.pixels.frame(frame), frame, context, output))
        spacing = (column_spacing, row_spacing, float(distances[-1] / (len(frames) - 1)))
        return _volume(output, origin, spacing, direction, notes, label, context, len(frames))

    shifts: list[AxisShift] = []
    if tilted:
        offsets = geometry.in_plane_offsets(positions, direction)
        angle = geometry.tilt_angle_degrees(positions, direction)
        shifts = shear_plan(offsets, (column_spacing, row_spacing), first)
        first_x = next((s.first for s in shifts if s.axis == 1), 0)
        first_y = next((s.first for s in shifts if s.axis == 0), 0)
        origin = (
            origin
            + first_x * column_spacing * direction[:, 0]
            + first_y * row_spacing * direction[:, 1]
        )
        notes.append(
            QANote(
                GANTRY_TILT_CORRECTED,
                f"Gantry tilt of {angle:.1f} degrees corrected by resampling onto an "
                "orthogonal grid.",
                {"tilt_degrees": angle, "shape_before": [len(frames), first.rows, first.columns]},
            )
        )
    plane = [first.rows, first.columns]
    for shift in shifts:
        plane[shift.axis] = shift.size
    grid = geometry.uniform_grid(distances) if variable else None
    output.allocate((grid.count if grid else len(frames), *plane))
    sources = Sources(
        frames,
        context.pixels,
        context.keep_stored,
        shifts,
        int(output.voxels.nbytes * _SOURCE_BUDGET),
    )
    if grid is not None:
        low, high, weight = resample_plan(distances, grid)
        for index in range(grid.count):
            values = sources.slice(int(low[index])) * (1 - weight[index])
            values += sources.slice(int(high[index])) * weight[index]
            output.put(index, np.rint(values, out=values) if output.integral else values)
        spacing_z = grid.spacing
        distinct = sorted({round(float(s), 2) for s in steps})
        notes.append(
            QANote(
                VARIABLE_SPACING_RESAMPLED,
                f"Slice spacing varies ({', '.join(f'{s:g}' for s in distinct)} mm); resampled to "
                f"{grid.count} slices at a uniform {spacing_z:.4g} mm (the smallest step, at most "
                "twice the slice count).",
                {
                    "original_steps_mm": [float(s) for s in steps],
                    "distinct_steps_mm": distinct,
                    "spacing_mm": spacing_z,
                    "slices": grid.count,
                },
            )
        )
    else:
        for k in range(len(frames)):
            values = sources.slice(k)
            output.put(k, np.rint(values) if output.integral else values)
        spacing_z = float(distances[-1] / (len(frames) - 1))

    spacing = (column_spacing, row_spacing, spacing_z)
    return _volume(output, origin, spacing, direction, notes, label, context, len(frames))


def _volume(
    output: _Output,
    origin: FloatArray,
    spacing: tuple[float, float, float],
    direction: FloatArray,
    notes: list[QANote],
    label: str,
    context: BuildContext,
    frame_count: int,
) -> VolumeResult:
    return VolumeResult(
        voxels=output.voxels,
        origin=triple(origin),
        spacing=spacing,
        direction=direction,
        notes=notes,
        label=label,
        modality=context.modality,
        series_instance_uid=context.series_uid,
        frame_count=frame_count,
    )


class _Output:
    """The voxels of one volume, allocated once and filled slice by slice.

    Non-integral values are float32. Integral values start as int16 and the array becomes
    int32 the first time a slice does not fit: the dtype :func:`to_output_dtype` would pick
    for the whole stack (int16 when the full range fits), without a float copy of it.
    """

    def __init__(self, integral: bool) -> None:
        self.integral = integral
        self.voxels: NDArray[Any] = np.empty((0, 0, 0), dtype=np.float32)

    def allocate(self, shape: tuple[int, ...]) -> None:
        self.voxels = np.empty(shape, dtype=np.int16 if self.integral else np.float32)

    def put(self, index: int, values: NDArray[Any]) -> None:
        """Store slice ``index``: integers (or integral floats) when integral, else floats."""
        if self.voxels.dtype == np.int16 and values.size:
            info = np.iinfo(np.int16)
            if not (info.min <= values.min() and values.max() <= info.max):
                self.voxels = self.voxels.astype(np.int32)
        self.voxels[index] = values


def _slice_values(
    pixels: NDArray[Any], frame: Frame, context: BuildContext, output: _Output
) -> NDArray[Any]:
    """One slice's values for :meth:`_Output.put`: exact integers (int32) for integer pixels
    with an integral rescale, rounded floats for other integral data, floats otherwise."""
    if not output.integral:
        return rescaled(pixels, frame, context.keep_stored)
    slope, intercept = (1, 0) if context.keep_stored else (int(frame.slope), int(frame.intercept))
    if (
        pixels.dtype.kind in "iu"
        and pixels.dtype.itemsize <= 2
        and abs(slope) <= 2**14
        and abs(intercept) <= 2**30  # 2**16 * 2**14 + 2**30 < 2**31: no int32 overflow
    ):
        values = pixels.astype(np.int32)
        if slope != 1:
            values *= slope
        if intercept:
            values += intercept
        return values
    return np.rint(rescaled(pixels, frame, context.keep_stored))
