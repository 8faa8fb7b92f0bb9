"""Reading a radiograph for the model: which view, which grey levels, which spacing, and a clear
reason for a file that cannot be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from appliance.analysis.radiograph import (
    NotARadiograph,
    read_radiograph,
    read_view_position,
    view_rank,
)
from tests.ai_server import CXR


def _write(path: Path, pixels: np.ndarray, **attributes: object) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_frontal_views_rank_before_others_and_laterals_last() -> None:
    views = ["LL", None, "AP", "RL", "PA", "OBL"]
    assert sorted(views, key=view_rank) == ["PA", "AP", None, "OBL", "LL", "RL"]


def test_the_real_8_bit_dx_is_sent_as_stored() -> None:
    radiograph = read_radiograph(CXR)
    stored = pydicom.dcmread(CXR).pixel_array
    assert radiograph.pixels.dtype == np.uint8
    assert np.array_equal(radiograph.pixels, stored)
    assert not radiograph.monochrome1 and not radiograph.inverted_here
    assert radiograph.spacing is None
    assert read_view_position(CXR) is None


def test_12_bit_monochrome1_goes_through_its_window_and_is_inverted(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 4000, 64).astype(np.uint16), (32, 1))
    path = _write(
        tmp_path / "cr.dcm",
        ramp,
        PhotometricInterpretation="MONOCHROME1",
        WindowCenter=2000,
        WindowWidth=4000,
        PixelSpacing=[0.2, 0.3],
        ImagerPixelSpacing=[0.25, 0.35],
        ViewPosition="PA",
    )
    radiograph = read_radiograph(path)
    assert radiograph.pixels.shape == (32, 64)
    # MONOCHROME1: the lowest stored value is displayed white (PS3.3 C.7.6.3.1.2).
    assert radiograph.pixels[0, 0] == 255 and radiograph.pixels[0, -1] == 0
    assert radiograph.monochrome1 and not radiograph.inverted_here  # inverted by the renderer
    # Pixel Spacing (calibrated to the patient) wins over Imager Pixel Spacing.
    assert radiograph.spacing is not None
    assert (radiograph.spacing.row_mm, radiograph.spacing.col_mm) == (0.2, 0.3)
    assert radiograph.spacing.source == "PixelSpacing"
    assert radiograph.view_position == "PA" == read_view_position(path)


def test_imager_pixel_spacing_is_used_when_it_is_the_only_one(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "dx.dcm",
        np.zeros((8, 8), dtype=np.uint8),
        PhotometricInterpretation="MONOCHROME1",
        ImagerPixelSpacing=[0.139, 0.14],
    )
    radiograph = read_radiograph(path)
    assert radiograph.inverted_here  # 8-bit as stored: the inversion is left to the caller
    assert radiograph.spacing is not None and radiograph.spacing.source == "ImagerPixelSpacing"
    assert (radiograph.spacing.row_mm, radiograph.spacing.col_mm) == (0.139, 0.14)


def test_files_that_cannot_be_used_say_why(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all")
    with pytest.raises(NotARadiograph, match="cannot be read"):
        read_radiograph(junk)
    frames = _write(
        tmp_path / "multi.dcm", np.zeros((2, 8, 8), dtype=np.uint8).reshape(16, 8), Rows=8
    )
    ds = pydicom.dcmread(frames)
    ds.NumberOfFrames = 2
    ds.save_as(frames)
    with pytest.raises(NotARadiograph, match="one frame; this instance has 2"):
        read_radiograph(frames)
