"""Pixel reading: one frame decoded at a time (stored values, no rescale), plain uncompressed
data read straight from the file, deferred Pixel Data released after use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array

from appliance.dicom import gdcm_fallback
from appliance.volumes.frames.base import Frame
from appliance.volumes.results import VolumeError

gdcm_fallback.register()  # 12-bit lossy JPEG that pylibjpeg refuses

# Pixel Data, Float Pixel Data, Double Float Pixel Data (PS3.3 C.7.6.3).
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
# Values longer than this are not read with the header (pydicom defers them to first access).
DEFER_BYTES = 16 * 1024


def decode(dataset: Dataset, index: int | None) -> NDArray[Any]:
    """Stored values of one frame (``index``) or of the whole image (None): plain uncompressed
    data read straight into an array (:func:`read_native`), anything else decoded by pydicom;
    a deferred Pixel Data value is read from the dataset's file."""
    native = read_native(dataset, index)
    if native is not None:
        return native
    return np.asarray(pixel_array(dataset, index=index))


class PixelReader:
    """Decodes one frame at a time (stored values, no rescale), never a whole series.

    With ``release`` (datasets read by :func:`build_volumes`, Pixel Data deferred), the value
    read for a decode is put back to deferred afterwards: right after the decode for a
    one-image file (classic slice, mosaic), when another file is needed for a multi-frame
    file (its frames, decoded one at a time, may belong to several volumes). Only the last
    decoded image is kept, so the tiles of a mosaic (consecutive in a stack) share one
    decode; callers copy what they keep.
    """

    def __init__(self, *, release: bool) -> None:
        self._release = release
        self._key: tuple[int, int | None] | None = None
        self._image: NDArray[Any] | None = None
        # The dataset whose Pixel Data was read, with its elements as they were (deferred).
        self._loaded: tuple[Dataset, list[tuple[int, Any]]] | None = None

    def frame(self, frame: Frame) -> NDArray[Any]:
        """The frame's stored values (a view of the last decoded image for mosaic tiles)."""
        key = (id(frame.dataset), frame.frame_index)
        if key != self._key or self._image is None:
            self.forget()
            try:
                self._image = self._decoded(frame.dataset, frame.frame_index)
            except Exception as exc:  # decoders raise many types; report them all the same way
                name = Path(str(getattr(frame.dataset, "filename", "") or "dataset")).name
                raise VolumeError(f"{name}: pixel data cannot be decoded ({exc})") from exc
            self._key = key
        array = self._image
        if frame.tile is not None:
            row, col = frame.tile
            array = array[
                row * frame.rows : (row + 1) * frame.rows,
                col * frame.columns : (col + 1) * frame.columns,
            ]
        return array

    def forget(self) -> None:
        """Drop the last decoded image."""
        self._key, self._image = None, None

    def close(self) -> None:
        """Drop everything held: the last image and any Pixel Data read."""
        self.forget()
        self._unload()

    def _decoded(self, dataset: Dataset, index: int | None) -> NDArray[Any]:
        if not self._release:
            return decode(dataset, index)
        if self._loaded is None or self._loaded[0] is not dataset:
            self._unload()
            elements = [
                (tag, dataset.get_item(tag, keep_deferred=True))
                for tag in PIXEL_TAGS
                if tag in dataset
            ]
            self._loaded = (dataset, elements)
        try:
            return decode(dataset, index)
        finally:
            if index is None:
                self._unload()

    def _unload(self) -> None:
        if self._loaded is not None:
            dataset, elements = self._loaded
            for tag, element in elements:
                dataset[tag] = element
            self._loaded = None


# Uncompressed little-endian transfer syntaxes whose Pixel Data sits in the file as it is.
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def read_native(dataset: Dataset, index: int | None) -> NDArray[Any] | None:
    """The stored values of one frame of uncompressed little-endian monochrome Pixel Data,
    read straight from the file into a new array when the value is still deferred (copied from
    the value when it was read with the header: under 16 KiB); None when the image is not that
    plain case (pydicom decodes it then).

    The values are those of pydicom's native decoder: the bytes as unsigned or signed
    integers of Bits Allocated (Pixel Representation), then, when Bits Stored is smaller,
    the unused high bits dropped by a left and an arithmetic right shift."""
    filename = getattr(dataset, "filename", None)
    meta = getattr(dataset, "file_meta", None)
    if not isinstance(filename, str) or meta is None:
        return None
    if str(meta.get("TransferSyntaxUID", "")) not in _NATIVE_SYNTAXES:
        return None
    if 0x7FE00010 not in dataset or 0x7FE00008 in dataset or 0x7FE00009 in dataset:
        return None
    element = dataset.get_item(0x7FE00010, keep_deferred=True)
    value = getattr(element, "value", b"")
    value_tell = getattr(element, "value_tell", None)
    if value is None and not isinstance(value_tell, int):
        return None
    if value is not None and not isinstance(value, bytes):
        return None
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        allocated, stored = int(dataset.BitsAllocated), int(dataset.BitsStored)
        signed = int(dataset.PixelRepresentation)
        samples = int(dataset.get("SamplesPerPixel", 1))
        photometric = str(dataset.PhotometricInterpretation)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if (
        allocated not in (8, 16, 32)
        or not 0 < stored <= allocated
        or signed not in (0, 1)
        or samples != 1
        or photometric not in ("MONOCHROME1", "MONOCHROME2")
        or rows <= 0
        or columns <= 0
        or (index is None and frames != 1)
        or (index is not None and not 0 <= index < frames)
    ):
        return None
    frame_bytes = rows * columns * allocated // 8
    length = len(value) if value is not None else getattr(element, "length", -1)
    if length not in (frames * frame_bytes, frames * frame_bytes + 1):
        return None
    values = np.empty((rows, columns), dtype=f"<{'i' if signed else 'u'}{allocated // 8}")
    start = (index or 0) * frame_bytes
    if value is not None:
        values.data.cast("B")[:] = value[start : start + frame_bytes]
    elif isinstance(value_tell, int):
        with open(filename, "rb") as handle:
            handle.seek(value_tell + start)
            if handle.readinto(values.data.cast("B")) != frame_bytes:
                return None
    if stored < allocated:
        shift = allocated - stored
        np.left_shift(values, shift, out=values)
        np.right_shift(values, shift, out=values)
    return values


def check_pixels(dataset: Dataset) -> None:
    """VolumeError for an image without pixel data or in colour."""
    name = Path(str(getattr(dataset, "filename", "") or "dataset")).name
    if not any(tag in dataset for tag in PIXEL_TAGS):
        raise VolumeError(f"{name}: no pixel data")
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise VolumeError(f"{name}: colour images (SamplesPerPixel > 1) are not reconstructed")
