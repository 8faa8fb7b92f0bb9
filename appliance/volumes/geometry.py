"""Slice geometry of a DICOM series: normals, sorting, spacing, tilt, gaps, affines.

Coordinates are DICOM patient coordinates (LPS, millimetres). The image plane is described by
Image Orientation (Patient) (0020,0037) and Image Position (Patient) (0020,0032), PS3.3 C.7.6.2:
the first three IOP values are the direction of a row (the x axis of the image), the next three
the direction of a column (y); IPP is the centre of the first transmitted pixel. The slice normal
is row x column. Slice spacing is always taken from the positions projected on that normal, never
from Slice Thickness (0018,0050), which is the thickness of the excitation, not the distance between
slices.

Pure functions over numpy arrays; nothing here reads files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Two orientations are the same when each direction cosine differs by less than this.
ORIENTATION_TOLERANCE = 1e-3
#: Two slice positions (along the normal) are the same when closer than this, in mm.
POSITION_TOLERANCE_MM = 0.01
#: Steps are "equal" when they differ by less than this fraction of the median step (or 0.01 mm).
SPACING_RELATIVE_TOLERANCE = 0.01
#: A step larger than this multiple of the median step is a candidate gap (missing slices).
GAP_FACTOR = 1.5
#: In-plane slice offsets below this fraction of a pixel are rounding noise, not gantry tilt.
TILT_MIN_SHIFT_PIXELS = 0.1


def direction_cosines(iop: Sequence[float]) -> FloatArray:
    """The 3x3 direction matrix of an image plane: columns row, column, normal (unit vectors).

    PS3.3 C.7.6.2.1.1: IOP holds the row and column direction cosines; the normal is their cross
    product, so the matrix is right-handed.
    """
    values = np.asarray(iop, dtype=np.float64)
    if values.shape != (6,):
        raise ValueError(f"Image Orientation (Patient) needs 6 values, got {values.size}")
    row = values[:3] / np.linalg.norm(values[:3])
    col = values[3:] / np.linalg.norm(values[3:])
    normal = np.cross(row, col)
    length = float(np.linalg.norm(normal))
    if length < 0.5:
        raise ValueError("Image Orientation (Patient) row and column directions are not orthogonal")
    return np.column_stack([row, col, normal / length])


def slice_normal(iop: Sequence[float]) -> FloatArray:
    """Unit normal of the image plane (row x column), PS3.3 C.7.6.2.1.1."""
    return direction_cosines(iop)[:, 2]


def project_on_normal(positions: FloatArray, normal: FloatArray) -> FloatArray:
    """Distance of each Image Position (Patient) along the slice normal, in mm (shape (n,))."""
    distances: FloatArray = np.asarray(positions, np.float64) @ np.asarray(normal, np.float64)
    return distances


def same_orientation(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when two IOP values describe the same plane orientation (within tolerance)."""
    return bool(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) < ORIENTATION_TOLERANCE)


def orientation_groups(iops: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices of the images grouped by orientation, in order of first appearance."""
    groups: list[tuple[Sequence[float], list[int]]] = []
    for index, iop in enumerate(iops):
        for reference, members in groups:
            if same_orientation(reference, iop):
                members.append(index)
                break
        else:
            groups.append((iop, [index]))
    return [members for _, members in groups]


def has_repeated_positions(distances: FloatArray) -> bool:
    """True when two slices share a position along the normal (a 4D or multi-contrast set)."""
    ordered = np.sort(np.asarray(distances, dtype=np.float64))
    return bool(ordered.size > 1 and np.min(np.diff(ordered)) < POSITION_TOLERANCE_MM)


def spacing_tolerance(median_step: float) -> float:
    """The tolerance under which two slice steps count as equal, in mm."""
    return max(POSITION_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * abs(median_step))


def find_gaps(steps: FloatArray, instance_numbers: Sequence[int | None] | None = None) -> list[int]:
    """Indices i of the steps (between sorted slices i and i+1) that are missing-slice gaps.

    A step is a candidate when it exceeds ``GAP_FACTOR`` times the median step. A candidate is
    *not* a gap, but a deliberate change of spacing (as in a CT reconstructed at 4 mm then 7 mm),
    when a neighbouring step has the same size and, where Instance Numbers are known, the two
    slices either side of it are numbered consecutively. Everything else is a gap, so a lone
    jump (or a jump in Instance Number) is always reported and never interpolated across.
    """
    steps = np.asarray(steps, dtype=np.float64)
    if steps.size == 0:
        return []
    median = float(np.median(steps))
    tolerance = spacing_tolerance(median)
    gaps = []
    for i, step in enumerate(steps):
        if step <= GAP_FACTOR * median:
            continue
        neighbours = [steps[j] for j in (i - 1, i + 1) if 0 <= j < steps.size]
        regular = any(abs(n - step) <= tolerance for n in neighbours)
        consecutive = True
        if instance_numbers is not None:
            before, after = instance_numbers[i], instance_numbers[i + 1]
            if before is not None and after is not None:
                consecutive = abs(after - before) == 1
        if not (regular and consecutive):
            gaps.append(i)
    return gaps


def in_plane_offsets(positions: FloatArray, direction: FloatArray) -> FloatArray:
    """Offset of each slice's IPP from the first slice's, along the row and column axes (n, 2).

    For a stack acquired perpendicular to its slices these are zero; a gantry tilt (or any
    shear) makes them grow with the distance along the normal.
    """
    relative = np.asarray(positions, dtype=np.float64) - np.asarray(positions, np.float64)[0]
    offsets: FloatArray = relative @ np.asarray(direction, dtype=np.float64)[:, :2]
    return offsets


def tilt_angle_degrees(positions: FloatArray, direction: FloatArray) -> float:
    """Angle between the first-to-last slice step and the slice normal, in degrees.

    Zero for an orthogonal stack; a CT gantry tilt shows here (dcm2niix estimates it the same way
    from the slice vector). Returns 0 for fewer than two slices.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape[0] < 2:
        return 0.0
    step = positions[-1] - positions[0]
    length = float(np.linalg.norm(step))
    if length < POSITION_TOLERANCE_MM:
        return 0.0
    cosine = abs(float(step @ np.asarray(direction, dtype=np.float64)[:, 2])) / length
    return math.degrees(math.acos(min(1.0, cosine)))


def is_tilted(positions: FloatArray, direction: FloatArray, pixel_spacing: Sequence[float]) -> bool:
    """True when the slices are sheared in-plane by more than ``TILT_MIN_SHIFT_PIXELS`` pixels."""
    offsets = in_plane_offsets(positions, direction)
    spacing_xy = np.asarray(pixel_spacing, dtype=np.float64)
    return bool(np.max(np.abs(offsets) / spacing_xy) > TILT_MIN_SHIFT_PIXELS)


def is_variable_spacing(steps: FloatArray) -> bool:
    """True when the slice steps are not all equal (within ``spacing_tolerance``)."""
    steps = np.asarray(steps, dtype=np.float64)
    if steps.size < 2:
        return False
    tolerance = spacing_tolerance(float(np.median(steps)))
    return bool(np.max(steps) - np.min(steps) > tolerance)


@dataclass(frozen=True, slots=True)
class UniformGrid:
    """Where to put equally spaced slices when resampling a variably spaced stack."""

    count: int
    spacing: float


def uniform_grid(distances: FloatArray) -> UniformGrid:
    """The equal-spacing grid for slices at ``distances`` (ascending, mm along the normal).

    Same rule as dcm2niix's ``nii_saveNII3Deq``: the smallest positive step is the target
    spacing, so no part of the stack is sampled more coarsely than it was acquired, but never
    more than twice the original number of slices (then the spacing is stretched to fit). Unlike
    dcm2niix's fence-post count, the grid always runs exactly from the first to the last slice,
    so nothing is extrapolated and nothing is cut off.
    """
    distances = np.asarray(distances, dtype=np.float64)
    extent = float(distances[-1] - distances[0])
    steps = np.diff(distances)
    positive = steps[steps > POSITION_TOLERANCE_MM]
    if extent <= 0 or positive.size == 0:
        raise ValueError("slice positions do not increase along the normal")
    smallest = float(np.min(positive))
    count = min(math.ceil(extent / smallest - 1e-6) + 1, 2 * distances.size)
    return UniformGrid(count=count, spacing=extent / (count - 1))


def affine_lps(
    origin: Sequence[float], spacing: Sequence[float], direction: FloatArray
) -> FloatArray:
    """The 4x4 voxel-to-patient (LPS) matrix: index (x, y, z) -> position in mm.

    ``spacing`` is (x, y, z) in mm; ``direction`` holds the unit axis directions as columns.
    The voxel (i, j, k) maps to origin + i*dx*col0 + j*dy*col1 + k*dz*col2 (PS3.3 C.7.6.2.1.1).
    """
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(direction, dtype=np.float64) * np.asarray(spacing, np.float64)
    matrix[:3, 3] = np.asarray(origin, dtype=np.float64)
    return matrix
