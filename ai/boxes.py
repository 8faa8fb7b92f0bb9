"""Map MedGemma boxes back to the original image and to patient coordinates.

MedGemma localizes on the image padded to a square: ``box_2d = [y0, x0, y1, x1]`` normalized to
0..1000 of the padded square's side (Google's CXR localization notebook). The padding is
centred on the short axis, with the odd pixel at the end: for ``rows < cols`` the top pad is
``(cols - rows) // 2`` (and the same for columns), exactly as the notebook's
``pad_image_to_square``.

Pixel boxes use edge coordinates of the ORIGINAL image: column 0..cols and row 0..rows, where
pixel (r, c) covers [r, r + 1) x [c, c + 1). Patient coordinates (DICOM LPS, mm) follow
PS3.3 C.7.6.2.1.1::

    P = S + X * dc * i + Y * dr * j

with S = Image Position (Patient) (the centre of the first pixel), X and Y = the row and
column direction cosines of Image Orientation (Patient), dc = column spacing = PixelSpacing[1],
dr = row spacing = PixelSpacing[0], i = column index and j = row index of a pixel centre.
A pixel edge coordinate c maps to the index c - 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ai.parsing import BOX_SCALE

Point3D = tuple[float, float, float]
#: Direction cosines may deviate from unit length / orthogonality by this much.
ORIENTATION_TOLERANCE = 1e-3
#: A box edge cut by less than this (floating-point noise) does not count as clamped.
CLAMP_TOLERANCE_PX = 1e-6


class HasBox2D(Protocol):
    """Anything with ``y0, x0, y1, x1`` in 0..1000 (a parsed or a safe box)."""

    @property
    def y0(self) -> float: ...
    @property
    def x0(self) -> float: ...
    @property
    def y1(self) -> float: ...
    @property
    def x1(self) -> float: ...


@dataclass(frozen=True, slots=True)
class SquarePadding:
    """How an image of ``rows`` x ``cols`` sits inside its padded square of ``side`` pixels."""

    rows: int
    cols: int
    pad_top: int
    pad_left: int
    side: int

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"image size must be positive, got {self.rows} x {self.cols}")
        if self.pad_top < 0 or self.pad_left < 0:
            raise ValueError("padding offsets cannot be negative")
        if self.pad_top + self.rows > self.side or self.pad_left + self.cols > self.side:
            raise ValueError(
                f"a {self.rows} x {self.cols} image padded by ({self.pad_top}, {self.pad_left}) "
                f"does not fit a {self.side} px square"
            )


def square_padding(rows: int, cols: int) -> SquarePadding:
    """The padding of Google's ``pad_image_to_square``: centred, odd pixel at bottom/right."""
    side = max(rows, cols)
    return SquarePadding(
        rows=rows, cols=cols, pad_top=(side - rows) // 2, pad_left=(side - cols) // 2, side=side
    )


@dataclass(frozen=True, slots=True)
class PixelBox:
    """A box in edge coordinates of the original image (0..rows, 0..cols).

    ``clamped`` is True when the model's box reached into the padding and was cut to the image;
    ``empty`` when nothing of it is left inside the image.
    """

    row0: float
    col0: float
    row1: float
    col1: float
    clamped: bool
    empty: bool


@dataclass(frozen=True, slots=True)
class PatientBox:
    """The four corners and the centre of a pixel box in patient coordinates (LPS, mm)."""

    top_left: Point3D
    top_right: Point3D
    bottom_right: Point3D
    bottom_left: Point3D
    center: Point3D


def _coords(box: HasBox2D | Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(box, Sequence):
        if len(box) != 4:
            raise ValueError(f"box_2d needs 4 values [y0, x0, y1, x1], got {len(box)}")
        y0, x0, y1, x1 = (float(value) for value in box)
    else:
        y0, x0, y1, x1 = float(box.y0), float(box.x0), float(box.y1), float(box.x1)
    if not all(math.isfinite(value) for value in (y0, x0, y1, x1)):
        raise ValueError("box_2d values must be finite")
    return y0, x0, y1, x1


def box_to_pixels(box: HasBox2D | Sequence[float], padding: SquarePadding) -> PixelBox:
    """Map a 0..1000 box of the padded square to edge coordinates of the original image."""
    y0, x0, y1, x1 = _coords(box)
    scale = padding.side / BOX_SCALE
    raw = (
        min(y0, y1) * scale - padding.pad_top,
        min(x0, x1) * scale - padding.pad_left,
        max(y0, y1) * scale - padding.pad_top,
        max(x0, x1) * scale - padding.pad_left,
    )
    return _inside(raw, padding.rows, padding.cols)


def box_to_pixels_unpadded(box: HasBox2D | Sequence[float], rows: int, cols: int) -> PixelBox:
    """Map a 0..1000 box of an image sent WITHOUT padding (a volume slice) to its edge
    coordinates: the processor resizes it to a square, so each axis scales on its own."""
    if rows < 1 or cols < 1:
        raise ValueError(f"image size must be positive, got {rows} x {cols}")
    y0, x0, y1, x1 = _coords(box)
    raw = (
        min(y0, y1) * rows / BOX_SCALE,
        min(x0, x1) * cols / BOX_SCALE,
        max(y0, y1) * rows / BOX_SCALE,
        max(x0, x1) * cols / BOX_SCALE,
    )
    return _inside(raw, rows, cols)


def _inside(raw: tuple[float, float, float, float], rows: int, cols: int) -> PixelBox:
    row0, row1 = (min(max(value, 0.0), float(rows)) for value in (raw[0], raw[2]))
    col0, col1 = (min(max(value, 0.0), float(cols)) for value in (raw[1], raw[3]))
    clamped = any(
        abs(kept - wanted) > CLAMP_TOLERANCE_PX
        for kept, wanted in zip((row0, col0, row1, col1), raw, strict=True)
    )
    return PixelBox(
        row0=row0,
        col0=col0,
        row1=row1,
        col1=col1,
        clamped=clamped,
        empty=row1 <= row0 or col1 <= col0,
    )


def pixels_to_box(pixel_box: PixelBox, padding: SquarePadding) -> tuple[float, ...]:
    """The inverse of :func:`box_to_pixels` for an unclamped box: ``(y0, x0, y1, x1)``."""
    scale = BOX_SCALE / padding.side
    return (
        (pixel_box.row0 + padding.pad_top) * scale,
        (pixel_box.col0 + padding.pad_left) * scale,
        (pixel_box.row1 + padding.pad_top) * scale,
        (pixel_box.col1 + padding.pad_left) * scale,
    )


def _check_geometry(
    iop: Sequence[float], pixel_spacing: Sequence[float], ipp: Sequence[float]
) -> tuple[Point3D, Point3D]:
    if len(ipp) != 3 or not all(math.isfinite(value) for value in ipp):
        raise ValueError("Image Position (Patient) needs 3 finite values")
    if len(pixel_spacing) != 2 or not all(
        math.isfinite(value) and value > 0 for value in pixel_spacing
    ):
        raise ValueError("Pixel Spacing needs 2 positive values (row spacing, column spacing)")
    if len(iop) != 6 or not all(math.isfinite(value) for value in iop):
        raise ValueError("Image Orientation (Patient) needs 6 finite values")
    row = (float(iop[0]), float(iop[1]), float(iop[2]))
    col = (float(iop[3]), float(iop[4]), float(iop[5]))
    for name, vector in (("row", row), ("column", col)):
        length = math.sqrt(sum(value * value for value in vector))
        if abs(length - 1.0) > ORIENTATION_TOLERANCE:
            raise ValueError(f"Image Orientation (Patient) {name} cosine is not a unit vector")
    if abs(sum(a * b for a, b in zip(row, col, strict=True))) > ORIENTATION_TOLERANCE:
        raise ValueError("Image Orientation (Patient) row and column are not orthogonal")
    return row, col


def pixel_to_patient(
    row: float,
    col: float,
    *,
    ipp: Sequence[float],
    iop: Sequence[float],
    pixel_spacing: Sequence[float],
) -> Point3D:
    """Patient position (mm) of pixel INDEX (row ``j``, column ``i``; centres are integers)."""
    row_cosine, col_cosine = _check_geometry(iop, pixel_spacing, ipp)
    row_spacing, col_spacing = float(pixel_spacing[0]), float(pixel_spacing[1])
    x, y, z = (
        float(ipp[axis])
        + row_cosine[axis] * col_spacing * col
        + col_cosine[axis] * row_spacing * row
        for axis in range(3)
    )
    return (x, y, z)


def box_to_patient(
    pixel_box: PixelBox,
    *,
    ipp: Sequence[float],
    iop: Sequence[float],
    pixel_spacing: Sequence[float],
) -> PatientBox:
    """Corners (pixel edges) and centre of a pixel box in patient coordinates (mm)."""

    def at(row_edge: float, col_edge: float) -> Point3D:
        return pixel_to_patient(
            row_edge - 0.5, col_edge - 0.5, ipp=ipp, iop=iop, pixel_spacing=pixel_spacing
        )

    return PatientBox(
        top_left=at(pixel_box.row0, pixel_box.col0),
        top_right=at(pixel_box.row0, pixel_box.col1),
        bottom_right=at(pixel_box.row1, pixel_box.col1),
        bottom_left=at(pixel_box.row1, pixel_box.col0),
        center=at((pixel_box.row0 + pixel_box.row1) / 2.0, (pixel_box.col0 + pixel_box.col1) / 2.0),
    )
