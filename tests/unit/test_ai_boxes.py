"""ai.boxes: 0..1000 boxes of the padded square back to pixels and to patient millimetres."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from ai.boxes import (
    PixelBox,
    SquarePadding,
    box_to_patient,
    box_to_pixels,
    box_to_pixels_unpadded,
    pixel_to_patient,
    pixels_to_box,
    square_padding,
)
from ai.parsing import parse_answer
from ai.safety import apply_safety


def _google_pad(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The padding of Google's ``pad_image_to_square`` (CXR localization notebook)."""
    h, w = image.shape
    if h < w:
        dh = w - h
        return np.pad(image, ((dh // 2, dh - dh // 2), (0, 0)))
    if w < h:
        dw = h - w
        return np.pad(image, ((0, 0), (dw // 2, dw - dw // 2)))
    return image


def test_square_padding_matches_the_notebook() -> None:
    assert square_padding(300, 500) == SquarePadding(300, 500, pad_top=100, pad_left=0, side=500)
    assert square_padding(500, 301) == SquarePadding(500, 301, pad_top=0, pad_left=99, side=500)
    assert square_padding(256, 256) == SquarePadding(256, 256, pad_top=0, pad_left=0, side=256)


def test_padding_must_fit_the_square() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        SquarePadding(rows=300, cols=500, pad_top=201, pad_left=0, side=500)
    with pytest.raises(ValueError, match="positive"):
        square_padding(0, 10)


def test_landscape_image_padded_top_and_bottom() -> None:
    padding = square_padding(300, 500)  # side 500, 100 px on top
    pixel = box_to_pixels([200, 100, 800, 600], padding)
    assert pixel == PixelBox(
        row0=0.0, col0=50.0, row1=300.0, col1=300.0, clamped=False, empty=False
    )


def test_portrait_image_padded_left_and_right() -> None:
    padding = square_padding(400, 200)  # side 400, 100 px on the left
    pixel = box_to_pixels([250, 250, 750, 750], padding)
    assert pixel == PixelBox(
        row0=100.0, col0=0.0, row1=300.0, col1=200.0, clamped=False, empty=False
    )


def test_parsed_box_object_is_accepted() -> None:
    parsed = parse_answer('[{"box_2d": [200, 100, 800, 600], "label": "mass"}]', expect="boxes")
    safe = apply_safety(parsed)
    padding = square_padding(300, 500)
    assert box_to_pixels(parsed.boxes[0], padding) == box_to_pixels(safe.boxes[0], padding)
    assert box_to_pixels(safe.boxes[0], padding).col1 == 300.0


@pytest.mark.parametrize(
    ("rows", "cols", "region"),
    [
        (300, 500, (40, 70, 260, 420)),  # landscape, even difference
        (301, 500, (0, 0, 301, 500)),  # landscape, odd difference, whole image
        (500, 301, (10, 1, 499, 300)),  # portrait, odd difference
        (7, 3, (2, 0, 5, 3)),  # tiny portrait, odd pad split 2 / 2
        (3, 8, (1, 2, 3, 7)),  # tiny landscape, odd pad split 2 / 3
        (64, 64, (5, 6, 50, 60)),  # already square
    ],
)
def test_box_maps_back_exactly_through_real_padding(
    rows: int, cols: int, region: tuple[int, int, int, int]
) -> None:
    """Mark a region, pad like the notebook, box it in the padded square, map back."""
    r0, c0, r1, c1 = region
    image = np.zeros((rows, cols), dtype=np.uint8)
    image[r0:r1, c0:c1] = 255
    padded = _google_pad(image)
    side = padded.shape[0]
    assert padded.shape == (side, side)
    marked_rows = np.flatnonzero(padded.any(axis=1))
    marked_cols = np.flatnonzero(padded.any(axis=0))
    box_2d = [
        marked_rows[0] / side * 1000,
        marked_cols[0] / side * 1000,
        (marked_rows[-1] + 1) / side * 1000,
        (marked_cols[-1] + 1) / side * 1000,
    ]
    pixel = box_to_pixels(box_2d, square_padding(rows, cols))
    assert (pixel.row0, pixel.col0, pixel.row1, pixel.col1) == pytest.approx(
        (r0, c0, r1, c1), abs=1e-9
    )
    assert pixel.clamped is False
    assert pixels_to_box(pixel, square_padding(rows, cols)) == pytest.approx(box_2d, abs=1e-9)


def test_box_reaching_into_the_padding_is_clamped() -> None:
    padding = square_padding(300, 500)
    pixel = box_to_pixels([0, 0, 1000, 1000], padding)
    assert (pixel.row0, pixel.col0, pixel.row1, pixel.col1) == (0.0, 0.0, 300.0, 500.0)
    assert pixel.clamped is True
    assert pixel.empty is False


def test_box_entirely_in_the_padding_is_empty() -> None:
    padding = square_padding(300, 500)  # rows 100..400 of the square hold the image
    pixel = box_to_pixels([0, 100, 150, 900], padding)
    assert pixel.empty is True
    assert pixel.clamped is True


def test_reversed_corners_are_ordered() -> None:
    padding = square_padding(100, 100)
    assert box_to_pixels([800, 600, 200, 100], padding) == box_to_pixels(
        [200, 100, 800, 600], padding
    )


def test_bad_box_values_are_refused() -> None:
    padding = square_padding(100, 100)
    with pytest.raises(ValueError):
        box_to_pixels([1, 2, 3], padding)
    with pytest.raises(ValueError):
        box_to_pixels([1, 2, 3, math.nan], padding)


# --- patient coordinates ---------------------------------------------------------------------


def test_axial_pixel_to_patient_uses_row_and_column_spacing_in_the_right_order() -> None:
    # PixelSpacing = [row spacing 0.5, column spacing 0.8]
    point = pixel_to_patient(
        10, 20, ipp=(-100.0, -120.0, 50.0), iop=(1, 0, 0, 0, 1, 0), pixel_spacing=(0.5, 0.8)
    )
    assert point == pytest.approx((-100.0 + 20 * 0.8, -120.0 + 10 * 0.5, 50.0))


def _rotation(ax: float, ay: float, az: float) -> NDArray[np.float64]:
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rotation: NDArray[np.float64] = np.asarray(rz @ ry @ rx, dtype=np.float64)
    return rotation


def test_oblique_geometry_matches_the_standard_matrix() -> None:
    """PS3.3 C.7.6.2.1.1: [P 1] = M [i j 0 1] on a synthetic double-oblique plane."""
    rotation = _rotation(math.radians(17), math.radians(-23), math.radians(31))
    row_cos, col_cos = rotation[:, 0], rotation[:, 1]
    iop = (*row_cos.tolist(), *col_cos.tolist())
    ipp = (-87.25, 112.5, -301.0)
    spacing = (0.7, 0.9)  # row spacing, column spacing
    matrix = np.array(
        [
            [row_cos[0] * spacing[1], col_cos[0] * spacing[0], 0, ipp[0]],
            [row_cos[1] * spacing[1], col_cos[1] * spacing[0], 0, ipp[1]],
            [row_cos[2] * spacing[1], col_cos[2] * spacing[0], 0, ipp[2]],
            [0, 0, 0, 1],
        ]
    )
    for row, col in ((0, 0), (0, 511), (255.5, 100.25), (400, 3)):
        expected = matrix @ np.array([col, row, 0, 1])
        point = pixel_to_patient(row, col, ipp=ipp, iop=iop, pixel_spacing=spacing)
        assert point == pytest.approx(tuple(expected[:3]), abs=1e-9)


def test_box_corners_in_mm_on_an_oblique_slice() -> None:
    rotation = _rotation(math.radians(30), math.radians(10), math.radians(-45))
    row_cos, col_cos = rotation[:, 0], rotation[:, 1]
    iop = (*row_cos.tolist(), *col_cos.tolist())
    ipp = (10.0, -20.0, 30.0)
    spacing = (0.5, 0.75)
    padding = square_padding(400, 600)  # side 600, 100 px on top
    pixel = box_to_pixels([250, 100, 500, 400], padding)  # rows 50..200, cols 60..240
    assert (pixel.row0, pixel.col0, pixel.row1, pixel.col1) == pytest.approx((50, 60, 200, 240))
    box = box_to_patient(pixel, ipp=ipp, iop=iop, pixel_spacing=spacing)
    origin = np.array(ipp)

    def expected(row_edge: float, col_edge: float) -> tuple[float, ...]:
        i, j = col_edge - 0.5, row_edge - 0.5  # pixel edges to centre indices
        return tuple(origin + row_cos * spacing[1] * i + col_cos * spacing[0] * j)

    assert box.top_left == pytest.approx(expected(50, 60))
    assert box.top_right == pytest.approx(expected(50, 240))
    assert box.bottom_right == pytest.approx(expected(200, 240))
    assert box.bottom_left == pytest.approx(expected(200, 60))
    assert box.center == pytest.approx(expected(125, 150))
    width = np.linalg.norm(np.subtract(box.top_right, box.top_left))
    height = np.linalg.norm(np.subtract(box.bottom_left, box.top_left))
    assert width == pytest.approx(180 * 0.75)
    assert height == pytest.approx(150 * 0.5)
    edge_dot = np.dot(
        np.subtract(box.top_right, box.top_left), np.subtract(box.bottom_left, box.top_left)
    )
    assert edge_dot == pytest.approx(0.0, abs=1e-9)


def test_first_pixel_centre_is_image_position() -> None:
    pixel = PixelBox(row0=0.0, col0=0.0, row1=1.0, col1=1.0, clamped=False, empty=False)
    box = box_to_patient(pixel, ipp=(1.0, 2.0, 3.0), iop=(1, 0, 0, 0, 1, 0), pixel_spacing=(2, 2))
    assert box.center == pytest.approx((1.0, 2.0, 3.0))
    assert box.top_left == pytest.approx((0.0, 1.0, 3.0))


@pytest.mark.parametrize(
    ("iop", "spacing", "ipp"),
    [
        ((1, 0, 0, 0, 1), (1, 1), (0, 0, 0)),
        ((2, 0, 0, 0, 1, 0), (1, 1), (0, 0, 0)),
        ((1, 0, 0, 0.5, 0.866, 0), (1, 1), (0, 0, 0)),
        ((1, 0, 0, 0, 1, 0), (0, 1), (0, 0, 0)),
        ((1, 0, 0, 0, 1, 0), (1, 1), (0, 0)),
    ],
    ids=["short-iop", "not-unit", "not-orthogonal", "zero-spacing", "short-ipp"],
)
def test_bad_geometry_is_refused(
    iop: tuple[float, ...], spacing: tuple[float, ...], ipp: tuple[float, ...]
) -> None:
    with pytest.raises(ValueError):
        pixel_to_patient(0, 0, ipp=ipp, iop=iop, pixel_spacing=spacing)


def test_an_unpadded_non_square_slice_scales_each_axis_on_its_own() -> None:
    """A 256 x 512 volume slice is sent as it is and resized to a square by the processor: the
    box's y runs over 256 rows and its x over 512 columns (no padding to take off)."""
    pixel = box_to_pixels_unpadded([250, 500, 750, 1000], rows=256, cols=512)
    assert (pixel.row0, pixel.col0, pixel.row1, pixel.col1) == (64.0, 256.0, 192.0, 512.0)
    assert not pixel.clamped and not pixel.empty
    # The square-padding mapping would have put this box 128 rows higher: it must differ.
    padded = box_to_pixels([250, 500, 750, 1000], square_padding(256, 512))
    assert padded.row0 != pixel.row0
    with pytest.raises(ValueError):
        box_to_pixels_unpadded([0, 0, 1, 1], rows=0, cols=10)
