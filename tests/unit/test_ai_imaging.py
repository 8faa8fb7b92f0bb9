"""MedGemma input preparation: slice sampling, CT channel windows, MR global scaling,
radiograph padding, deterministic JPEGs and the digest over them."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from PIL import Image

from ai import imaging
from ai.boxes import box_to_pixels, square_padding
from appliance.volumes.reconstruct import build_volumes
from tests.dicom_files import DATA, instance_files

LIDC = DATA.parents[2] / "shared" / "data" / "dicom" / "ct_chest_lidc_0001"
XA30 = "mr_siemens_xa30_t1_jpeglossless_fragmented"


def decode(data: bytes) -> NDArray[np.uint8]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        return np.asarray(image, dtype=np.uint8)


def hu_volume(slices: int, rows: int = 16, cols: int = 24) -> NDArray[np.int16]:
    """Slice z holds the constant HU value -1000 + 10 z: each slice is recognisable."""
    values = (-1000 + 10 * np.arange(slices)).astype(np.int16)
    return np.broadcast_to(values[:, None, None], (slices, rows, cols)).copy()


def check_sampling(prepared: imaging.PreparedImages, count: int) -> None:
    indices = prepared.slice_indices
    assert len(indices) == min(count, imaging.MAX_SLICES)
    assert indices[0] == 0 and indices[-1] == count - 1
    assert all(np.diff(indices) > 0)
    assert [i.label for i in prepared.images] == [f"SLICE {n}" for n in range(1, len(indices) + 1)]
    assert [i.number for i in prepared.images] == list(range(1, len(indices) + 1))
    assert prepared.slice_count == count


def test_sampling_is_uniform_and_keeps_the_ends() -> None:
    assert imaging.sample_indices(10) == list(range(10))
    assert imaging.sample_indices(85) == list(range(85))
    indices = imaging.sample_indices(200)
    expected = [int(np.floor(i * 199 / 84 + 0.5)) for i in range(85)]
    assert indices == expected and indices[0] == 0 and indices[-1] == 199
    steps = np.diff(indices)
    assert set(steps.tolist()) <= {2, 3}  # 199 / 84 = 2.37: evenly spread
    assert imaging.sample_indices(86) == sorted(set(imaging.sample_indices(86)))
    assert len(imaging.sample_indices(86)) == 85
    with pytest.raises(ValueError):
        imaging.sample_indices(0)


def test_a_200_slice_ct_gives_85_slices_with_their_own_content() -> None:
    volume = hu_volume(200)
    prepared = imaging.prepare_ct(volume)
    assert prepared.kind == "ct" and prepared.windows == imaging.CT_WINDOWS
    check_sampling(prepared, 200)
    for image in prepared.images:
        assert (image.width, image.height) == (24, 16)
        pixels = decode(image.data)
        hu = -1000 + 10 * (image.slice_index or 0)
        want = imaging.ct_rgb(np.array([[hu]]))[0, 0].astype(int)
        # a flat JPEG block decodes to its value (within 1 level)
        assert np.abs(pixels.astype(int) - want).max() <= 1, image.slice_index


def test_a_short_volume_keeps_every_slice() -> None:
    prepared = imaging.prepare_ct(hu_volume(12))
    check_sampling(prepared, 12)
    assert prepared.slice_indices == list(range(12))


def test_the_three_windows_are_exact_at_edges_and_midpoints() -> None:
    red, green, blue = imaging.CT_WINDOWS
    assert (red.low, red.high, green.low, green.high, blue.low, blue.high) == (
        -1024, 1024, -135, 215, 0, 80,
    )  # fmt: skip
    ramp = np.array([[-3000, -1024, -512, 0, 512, 1024, 3000]], dtype=np.float64)
    assert imaging.ct_rgb(ramp)[0, :, 0].tolist() == [0, 0, 64, 128, 191, 255, 255]
    soft = np.array([[-500, -135, -47.5, 40, 127.5, 215, 500]])
    assert imaging.ct_rgb(soft)[0, :, 1].tolist() == [0, 0, 64, 128, 191, 255, 255]
    brain = np.array([[-10, 0, 20, 40, 60, 80, 100]])
    assert imaging.ct_rgb(brain)[0, :, 2].tolist() == [0, 0, 64, 128, 191, 255, 255]
    # one pixel, three views: 40 HU is mid-grey in soft tissue and brain, (1064/2048) in R
    assert imaging.ct_rgb(np.array([[40]]))[0, 0].tolist() == [132, 128, 128]
    with pytest.raises(ValueError):
        imaging.HUWindow(10, 10)


def test_mr_uses_one_min_and_max_over_the_whole_volume() -> None:
    volume = np.stack([np.full((8, 8), 10 * z, dtype=np.int16) for z in range(11)])
    prepared = imaging.prepare_mr(volume)
    assert prepared.kind == "mr" and prepared.value_range == (0.0, 100.0)
    check_sampling(prepared, 11)
    levels = [int(np.median(decode(i.data))) for i in prepared.images]
    # slice z is 10 z of 0..100: not stretched per slice
    assert levels == [int(np.rint(10 * z / 100 * 255)) for z in range(11)]
    first = decode(prepared.images[5].data)
    assert np.array_equal(first[..., 0], first[..., 1]) and np.array_equal(
        first[..., 1], first[..., 2]
    )  # grey replicated to RGB
    flat = imaging.prepare_mr(np.full((3, 4, 4), 7, dtype=np.int16))
    assert all(int(decode(i.data).min()) == 255 for i in flat.images)


def test_a_96_slice_mr_gives_85_slices() -> None:
    (volume,) = build_volumes(instance_files(XA30))
    assert volume.voxels.shape[0] == 96
    prepared = imaging.prepare_mr(volume.voxels)
    check_sampling(prepared, 96)
    assert prepared.value_range == (float(volume.voxels.min()), float(volume.voxels.max()))


def test_the_lidc_chest_ct_gives_85_slices() -> None:
    if not LIDC.is_dir():
        pytest.skip(f"{LIDC} is absent (the 133-slice LIDC CT is not in tests/data)")
    files = sorted(p for p in LIDC.iterdir() if p.suffix == ".dcm")
    volumes = [v for v in build_volumes(files) if v.is_volume]
    largest = max(volumes, key=lambda v: v.voxels.shape[0])
    assert largest.voxels.shape[0] > imaging.MAX_SLICES
    prepared = imaging.prepare_ct(largest.voxels)
    check_sampling(prepared, largest.voxels.shape[0])


@pytest.mark.parametrize(
    ("rows", "cols", "top", "left"),
    [(300, 401, 50, 0), (401, 300, 0, 50), (64, 64, 0, 0), (5, 2, 0, 1)],
)
def test_radiographs_are_padded_like_square_padding(
    rows: int, cols: int, top: int, left: int
) -> None:
    image = np.full((rows, cols), 1000, dtype=np.uint16)
    image[0, 0] = 0  # the minimum, so the rest maps to 255
    square, padding = imaging.pad_to_square(imaging.to_uint8(image)[0])
    assert padding == square_padding(rows, cols)
    assert (padding.pad_top, padding.pad_left, padding.side) == (top, left, max(rows, cols))
    inside = square[top : top + rows, left : left + cols]
    assert inside[1:, 1:].min() == 255 and square.sum() == inside.sum()  # padding is black
    bottom = padding.side - rows - top
    assert bottom - top in (0, 1)  # the odd pixel goes to the bottom (or right)

    prepared = imaging.prepare_radiograph(image, side=None)
    assert prepared.padding == padding and prepared.scale == 1.0
    assert (prepared.images[0].width, prepared.images[0].height) == (padding.side, padding.side)
    resized = imaging.prepare_radiograph(image)
    assert (resized.images[0].width, resized.images[0].height) == (896, 896)
    assert resized.scale == pytest.approx(896 / padding.side)
    assert resized.images[0].label is None and resized.images[0].slice_index is None


def test_a_box_on_the_padded_image_maps_back_to_the_original() -> None:
    prepared = imaging.prepare_radiograph(np.zeros((300, 400), dtype=np.uint8))
    assert prepared.padding is not None
    # the whole original image, in 0..1000 of the padded square
    pixel_box = box_to_pixels([125, 0, 875, 1000], prepared.padding)
    assert (pixel_box.row0, pixel_box.col0, pixel_box.row1, pixel_box.col1) == (0, 0, 300, 400)
    assert not pixel_box.clamped


def test_monochrome1_is_inverted() -> None:
    image = np.array([[0, 4095], [4095, 4095]], dtype=np.uint16)
    plain = decode(imaging.prepare_radiograph(image, side=None).images[0].data)
    inverted = imaging.prepare_radiograph(image, monochrome1=True, side=None)
    assert inverted.inverted and inverted.value_range == (0.0, 4095.0)
    pixels = decode(inverted.images[0].data)
    assert int(plain[1, 1].mean()) > 200 and int(pixels[1, 1].mean()) < 50


def test_the_real_chest_radiograph() -> None:
    (path,) = instance_files("xr_chest_cr_dx")
    ds = pydicom.dcmread(path)
    prepared = imaging.prepare_radiograph(
        ds.pixel_array, monochrome1=ds.PhotometricInterpretation == "MONOCHROME1"
    )
    assert prepared.padding == square_padding(1024, 1024)
    assert prepared.scale == pytest.approx(896 / 1024)
    assert decode(prepared.images[0].data).shape == (896, 896, 3)


def test_same_input_same_bytes_and_digest() -> None:
    volume = hu_volume(100, 32, 32) + np.arange(32, dtype=np.int16)[None, None, :]
    first, second = imaging.prepare_ct(volume), imaging.prepare_ct(volume.copy())
    assert [i.data for i in first.images] == [i.data for i in second.images]
    assert first.sha256 == second.sha256 == imaging.images_sha256([i.data for i in first.images])
    changed = volume.copy()
    changed[first.slice_indices[10], 0, 0] += 100
    assert imaging.prepare_ct(changed).sha256 != first.sha256
    assert imaging.images_sha256([b"ab", b"c"]) != imaging.images_sha256([b"a", b"bc"])
