"""The direct reader of uncompressed Pixel Data gives exactly pydicom's decoded values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from appliance.volumes import pixels


def _write(
    path: Path,
    raw: np.ndarray,
    *,
    syntax: str,
    bits_stored: int,
    signed: int,
    frames: int = 1,
) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID(syntax)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = raw.shape[-2:]
    ds.BitsAllocated = raw.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = signed
    if frames > 1:
        ds.NumberOfFrames = frames
    big = syntax == ExplicitVRBigEndian
    ds.PixelData = raw.astype(raw.dtype.newbyteorder(">" if big else "<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _bits(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Random values over every bit of the dtype, unused high bits included."""
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "signed", "syntax", "shape"),
    [
        ("<i2", 12, 1, ExplicitVRLittleEndian, (96, 80)),  # signed 12-bit, garbage high bits
        ("<u2", 12, 0, ExplicitVRLittleEndian, (96, 80)),
        ("<i2", 16, 1, ImplicitVRLittleEndian, (128, 160)),  # deferred (> 16 KiB)
        ("<u2", 16, 0, ExplicitVRLittleEndian, (40, 30)),  # small: read with the header
        ("u1", 8, 0, ImplicitVRLittleEndian, (7, 9)),  # odd length, padded
        ("i1", 6, 1, ExplicitVRLittleEndian, (200, 100)),
    ],
)
def test_native_read_equals_pydicom(
    tmp_path: Path, dtype: str, bits_stored: int, signed: int, syntax: str, shape: tuple[int, int]
) -> None:
    raw = _bits(np.random.default_rng(7), shape, dtype)
    path = _write(tmp_path / "a.dcm", raw, syntax=syntax, bits_stored=bits_stored, signed=signed)
    expected = pixel_array(pydicom.dcmread(path))
    dataset = pydicom.dcmread(path, defer_size=16 * 1024)
    dataset.filename = str(path)
    got = pixels.read_native(dataset, None)
    assert got is not None
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected)
    if bits_stored < raw.dtype.itemsize * 8:
        assert not np.array_equal(got, raw)  # the unused bits were really dropped


def test_native_read_of_one_frame_of_a_multi_frame_object(tmp_path: Path) -> None:
    raw = _bits(np.random.default_rng(3), (4, 64, 72), "<i2")
    path = _write(
        tmp_path / "m.dcm", raw, syntax=ExplicitVRLittleEndian, bits_stored=13, signed=1, frames=4
    )
    dataset = pydicom.dcmread(path, defer_size=1024)
    dataset.filename = str(path)
    for index in range(4):
        got = pixels.read_native(dataset, index)
        assert got is not None
        assert np.array_equal(got, pixel_array(pydicom.dcmread(path), index=index))
    assert pixels.read_native(dataset, None) is None  # the whole object: left to pydicom


def test_other_syntaxes_are_left_to_pydicom(tmp_path: Path) -> None:
    raw = _bits(np.random.default_rng(5), (32, 32), "<i2")
    path = _write(tmp_path / "b.dcm", raw, syntax=ExplicitVRBigEndian, bits_stored=16, signed=1)
    dataset = pydicom.dcmread(path, defer_size=16 * 1024)
    dataset.filename = str(path)
    assert pixels.read_native(dataset, None) is None
    assert np.array_equal(pixels.decode(dataset, None), raw)  # pydicom's big-endian decode
