"""Rendering frames to PNG on real files: presets, the file's own VOI, MONOCHROME1, colour,
multi-frame and every transfer syntax of the matrix set."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, convert_color_space
from pydicom.uid import ExplicitVRLittleEndian

from appliance.audit.models import Actor
from appliance.dicom.preview import (
    WINDOW_PRESETS,
    FrameOutOfRange,
    NotRenderable,
    Window,
    explicit_window,
    presets_apply,
    render,
)
from tests.dicom_files import DATA, instance_files

CT_SLICE = instance_files("ct_ge_head_tilt18_varspacing")[10]


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def decoded(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image)


def test_presets_are_the_ohif_values() -> None:
    assert dict(WINDOW_PRESETS) == {
        "soft": Window(400, 40),
        "lung": Window(1500, -600),
        "liver": Window(150, 90),
        "bone": Window(2500, 480),
        "brain": Window(80, 40),
    }


def test_ct_presets_render_different_windows() -> None:
    images = {name: render(CT_SLICE, preset=name) for name in ("lung", "bone", "brain", "auto")}
    for name in ("lung", "bone", "brain"):
        assert images[name].source == "preset" and images[name].window == WINDOW_PRESETS[name]
        pixels = decoded(images[name].png())
        assert pixels.shape == (512, 512) and pixels.dtype == np.uint8
    assert images["auto"].source == "window"  # the file's Window Center/Width (35/100)
    assert images["auto"].window == Window(100, 35)
    assert not np.array_equal(images["lung"].pixels, images["bone"].pixels)
    # a narrow brain window saturates more of the image than the wide bone window
    assert (images["brain"].pixels == 255).sum() > (images["bone"].pixels == 255).sum()


def test_presets_follow_hounsfield_units(tmp_path: Path) -> None:
    """Air (-1000 HU) is black in every preset; dense bone (+1500 HU) is white in soft."""
    ds = pydicom.dcmread(CT_SLICE)
    arr = ds.pixel_array.copy()
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    arr[:10, :10] = round((-1000 - intercept) / slope)
    arr[-10:, -10:] = round((1500 - intercept) / slope)
    ds.PixelData = arr.tobytes()
    path = save(ds, tmp_path / "hu.dcm")
    soft = render(path, preset="soft").pixels
    bone = render(path, preset="bone").pixels
    assert soft[:10, :10].max() == 0 and bone[:10, :10].max() == 0
    assert soft[-10:, -10:].min() == 255
    assert 0 < bone[-10:, -10:].min() < 255  # within the bone window


def test_presets_apply_only_to_ct_in_hu() -> None:
    mr = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    assert not presets_apply(pydicom.dcmread(mr, stop_before_pixels=True))
    assert presets_apply(pydicom.dcmread(CT_SLICE, stop_before_pixels=True))
    lung = render(mr, preset="lung")
    assert lung.source == "window" and lung.preset is None
    assert np.array_equal(lung.pixels, render(mr).pixels)
    # enhanced CT perfusion map: Rescale Type US (not HU) in its functional groups
    ect = DATA / "ct_enhanced_multiframe_nema_ct0012" / "eCT_Supplemental.dcm"
    perfusion = render(ect, preset="bone")
    assert perfusion.preset is None and perfusion.window == Window(102, 49)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    """A real CR stored MONOCHROME1 (PS3.3 C.7.6.3.1.2): the same pixels labelled MONOCHROME2
    render as the exact negative, and the lowest stored value is the brightest."""
    cr = next(
        p
        for p in instance_files("dicomdir_pcir_3patients_prior_current")
        if pydicom.dcmread(p, stop_before_pixels=True).PhotometricInterpretation == "MONOCHROME1"
    )
    ds = pydicom.dcmread(cr)
    mono1 = render(cr)
    ds.PhotometricInterpretation = "MONOCHROME2"
    mono2 = render(save(ds, tmp_path / "mono2.dcm"))
    assert mono1.source == mono2.source
    assert np.array_equal(mono1.pixels.astype(int), 255 - mono2.pixels.astype(int))
    stored = ds.pixel_array
    assert mono1.pixels[np.unravel_index(stored.argmin(), stored.shape)] == mono1.pixels.max()
    assert mono1.pixels[np.unravel_index(stored.argmax(), stored.shape)] == mono1.pixels.min()


def test_without_a_window_the_percentiles_are_used() -> None:
    dx = DATA / "xr_chest_cr_dx" / "NIH_ChestXray_DX_SC.dcm"
    rendered = render(dx)
    assert rendered.source == "percentiles" and rendered.pixels.shape == (1024, 1024)
    share_black = (rendered.pixels == 0).mean()
    share_white = (rendered.pixels == 255).mean()
    assert 0.002 < share_black < 0.05 and 0.002 < share_white < 0.05


def test_a_voi_lut_sequence_wins_over_the_window(tmp_path: Path) -> None:
    """PS3.3 C.11.2: with both present, the VOI LUT is used (pydicom's prefer_lut)."""
    ds = pydicom.dcmread(CT_SLICE)
    item = Dataset()
    item.LUTDescriptor = [4096, -1024, 16]  # HU -1024..3071, a descending (inverting) ramp
    item.LUTData = np.arange(4095, -1, -1, dtype="<u2").tobytes()
    ds.VOILUTSequence = [item]
    path = save(ds, tmp_path / "voi.dcm")
    lut = render(path)
    assert lut.source == "voi-lut"
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.rint((3071 - np.clip(hu, -1024, 3071)) / 4095 * 255)
    assert np.abs(lut.pixels.astype(float) - expected).max() <= 1


def test_multiframe_selects_one_frame() -> None:
    path = DATA / "mr_enhanced_multiframe" / "philips_achieva" / "IM_0027_fMAP.dcm"
    frames = pydicom.dcmread(path).pixel_array
    first, other = render(path, frame=0), render(path, frame=40)
    assert first.frames == 64 and first.pixels.shape == (64, 64)
    assert not np.array_equal(first.pixels, other.pixels)
    # frame 40 shows frame 40's data: brightest where that frame's stored values are highest
    assert other.pixels[np.unravel_index(frames[40].argmax(), (64, 64))] == other.pixels.max()
    with pytest.raises(FrameOutOfRange, match="frame 64 does not exist"):
        render(path, frame=64)
    with pytest.raises(FrameOutOfRange):
        render(CT_SLICE, frame=1)


def test_every_transfer_syntax_renders_the_same_png() -> None:
    """tests/data/mr_siemens_transfer_syntax_matrix: one image in 9 encodings (native LE/BE,
    RLE, JPEG Lossless x2, JPEG-LS x2, JPEG 2000)."""
    files = instance_files("mr_siemens_transfer_syntax_matrix")
    syntaxes = {
        str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in files
    }
    assert {
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90",
    } <= syntaxes
    pngs = {p.name: render(p).png() for p in files}
    assert len(set(pngs.values())) == 1, sorted(pngs)


def test_fragmented_jpeg_lossless_renders() -> None:
    path = instance_files("mr_siemens_xa30_t1_jpeglossless_fragmented")[40]
    rendered = render(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert rendered.pixels.shape == (ds.Rows, ds.Columns)
    assert rendered.pixels.std() > 10  # an image, not a flat field


def _rgb_dataset(tmp_path: Path) -> tuple[Dataset, np.ndarray]:
    ds = pydicom.dcmread(DATA / "xr_chest_cr_dx" / "NIH_ChestXray_DX_SC.dcm")
    grey = ds.pixel_array[::4, ::4].astype(np.uint8)
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 77)], axis=-1)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = rgb.tobytes()
    return ds, rgb


def test_rgb_and_ybr_are_shown_in_colour(tmp_path: Path) -> None:
    ds, rgb = _rgb_dataset(tmp_path)
    shown = render(save(ds, tmp_path / "rgb.dcm"))
    assert shown.source == "colour"
    assert np.array_equal(decoded(shown.png()), rgb)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.PixelData = ybr.tobytes()
    back = decoded(render(save(ds, tmp_path / "ybr.dcm")).png())
    assert back.shape == rgb.shape
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 2  # converted back to RGB


def test_palette_colour_goes_through_its_lut(tmp_path: Path) -> None:
    ds, _ = _rgb_dataset(tmp_path)
    index = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel = 1
    del ds.PlanarConfiguration
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ramp = np.arange(256, dtype=np.uint16) * 257
    for colour, values in (("Red", ramp), ("Green", ramp[::-1]), ("Blue", np.zeros(256, "u2"))):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", values.astype("<u2").tobytes())
    ds.PixelData = index.tobytes()
    shown = render(save(ds, tmp_path / "palette.dcm"))
    assert shown.source == "colour" and shown.pixels.shape == (64, 64, 3)
    assert np.array_equal(shown.pixels[..., 0], index)
    assert np.array_equal(shown.pixels[..., 1], 255 - index)
    assert shown.pixels[..., 2].max() == 0


def test_an_instance_without_pixels_is_not_renderable(tmp_path: Path) -> None:
    ds = pydicom.dcmread(CT_SLICE)
    del ds.PixelData
    with pytest.raises(NotRenderable, match="no Pixel Data"):
        render(save(ds, tmp_path / "nopixels.dcm"))


# ---- explicit window (centre/width) ---------------------------------------------------------


def linear_voi(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (LINEAR) to 0..255, written from the standard's text."""
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    low = x <= center - 0.5 - (width - 1) / 2
    high = x > center - 0.5 + (width - 1) / 2
    middle = ~(low | high)
    y[low], y[high] = 0.0, 255.0
    if width > 1:
        y[middle] = ((x[middle] - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.rint(y).astype(np.uint8)


@pytest.mark.parametrize(
    ("center", "width"), [(40, 400), (-600, 1500), (35.5, 1), (300, 2), (12.25, 77.5)]
)
def test_an_explicit_window_follows_the_linear_voi_formula(center: float, width: float) -> None:
    ds = pydicom.dcmread(CT_SLICE)
    hounsfield = apply_modality_lut(ds.pixel_array, ds)
    expected = linear_voi(hounsfield, center, width)
    shown = render(CT_SLICE, preset="lung", window=Window(width, center))  # the window wins
    assert shown.source == "explicit" and shown.preset is None
    assert shown.window == Window(width, center)
    assert np.array_equal(shown.pixels, expected)
    assert np.array_equal(decoded(shown.png()), expected)
    assert 0 < np.count_nonzero(expected) < expected.size  # the test slice spans the window


def test_an_explicit_window_applies_to_images_outside_hu() -> None:
    mr = instance_files("mr_siemens_t1_sag_brain_35sl")[17]
    ds = pydicom.dcmread(mr)
    values = apply_modality_lut(ds.pixel_array, ds)
    center, width = float(np.median(values)), float(np.ptp(values)) / 4 + 1
    shown = render(mr, window=Window(width, center))
    assert shown.source == "explicit"
    assert np.array_equal(shown.pixels, linear_voi(values, center, width))


@pytest.mark.parametrize(
    ("center", "width", "message"),
    [
        (40.0, None, "both"),
        (None, 400.0, "both"),
        (float("nan"), 400.0, "finite"),
        (40.0, float("inf"), "finite"),
        (40.0, 0.0, "between 1 and"),
        (40.0, 0.5, "between 1 and"),
        (40.0, -10.0, "between 1 and"),
        (40.0, 3e6, "between 1 and"),
        (2e6, 400.0, "center must be between"),
    ],
)
def test_a_bad_explicit_window_is_refused(
    center: float | None, width: float | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        explicit_window(center, width)


def test_explicit_window_accepts_both_or_neither() -> None:
    assert explicit_window(None, None) is None
    assert explicit_window(-600, 1500) == Window(1500, -600)
    assert explicit_window(-1e6, 2e6) == Window(2e6, -1e6)


def test_the_preview_route_takes_center_and_width(
    client: TestClient, app: FastAPI, as_role: Callable[[str], dict[str, str]],
    db: sqlite_utils.Database,
) -> None:
    ctx = app.state.ctx
    result = ctx.ingestor.ingest(CT_SLICE.read_bytes(), source="test", actor=Actor.system("t"))
    assert result.outcome.value == "stored", result.reason
    (instance_id,) = [r[0] for r in db.execute("SELECT id FROM instances")]
    url = f"/api/instances/{instance_id}/preview.png"
    viewer = as_role("viewer")
    shown = client.get(url, params={"center": -600, "width": 1500}, headers=viewer)
    assert shown.status_code == 200, shown.text
    assert shown.headers["x-window-source"] == "explicit"
    assert (shown.headers["x-window-center"], shown.headers["x-window-width"]) == ("-600", "1500")
    assert "x-window-preset" not in shown.headers
    ds = pydicom.dcmread(CT_SLICE)
    expected = linear_voi(apply_modality_lut(ds.pixel_array, ds), -600, 1500)
    assert np.array_equal(decoded(shown.content), expected)
    detail = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'instance.preview' ORDER BY id DESC"
    ).fetchone()[0]
    assert '"center":-600.0' in detail and '"width":1500.0' in detail
    for params, words in (
        ({"center": 40}, "both"),
        ({"width": 400}, "both"),
        ({"center": 40, "width": 0}, "between 1 and"),
        ({"center": 40, "width": "nan"}, "finite"),
        ({"center": "inf", "width": 400}, "finite"),
        ({"center": 5e6, "width": 400}, "center must be between"),
    ):
        bad = client.get(url, params=params, headers=viewer)
        assert bad.status_code == 422, params
        assert bad.headers["content-type"] == "application/problem+json"
        assert words in bad.json()["detail"], bad.json()
    assert client.get(url, params={"center": "soft", "width": 400}, headers=viewer
                      ).status_code == 422
