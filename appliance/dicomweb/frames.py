"""Frames of stored instances: as stored, or decoded to Explicit VR Little Endian
(PS3.18 8.7.3.5: a frame of a native syntax is ``application/octet-stream``, one of a
compressed syntax the matching image type, Table 8.7.3-5), and rendered images (8.3.5.1)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import pixel_array

from appliance.dicom import preview
from appliance.dicomweb.models import EXPLICIT_BE, NATIVE


class FrameError(ValueError):
    """A frame that does not exist or cannot be produced (``status`` is the HTTP answer)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def read(path: Path, *, pixels: bool = True) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, stop_before_pixels=not pixels)
        except Exception as exc:
            raise FrameError(
                409, f"the stored file cannot be read ({exc.__class__.__name__})"
            ) from None


def frame_count(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def check_numbers(ds: Dataset, numbers: list[int]) -> None:
    if "PixelData" not in ds:
        raise FrameError(404, "this instance holds no Pixel Data, so it has no frames")
    count = frame_count(ds)
    bad = [n for n in numbers if not 1 <= n <= count]
    if bad:
        raise FrameError(404, f"frame {bad[0]} does not exist: frames are numbered 1 to {count}")


def _native_length(ds: Dataset) -> int:
    bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
    bits *= int(ds.BitsAllocated)
    if bits % 8:
        raise FrameError(406, "bit-packed frames that do not end on a byte are not served")
    return bits // 8


def stored(ds: Dataset, transfer_syntax: str, numbers: list[int]) -> list[bytes]:
    """Frames ``numbers`` (1-based) exactly as the file holds them."""
    check_numbers(ds, numbers)
    data: bytes = ds.PixelData
    if transfer_syntax in NATIVE:
        length = _native_length(ds)
        return [data[(n - 1) * length : n * length] for n in numbers]
    count = frame_count(ds)
    try:
        every = list(generate_frames(data, number_of_frames=count))
    except Exception as exc:
        raise FrameError(409, f"the encapsulated pixel data is damaged ({exc})") from None
    if len(every) < count:
        raise FrameError(409, "the encapsulated pixel data holds fewer frames than announced")
    return [every[n - 1] for n in numbers]


def little_endian(ds: Dataset, path: Path, transfer_syntax: str, numbers: list[int]) -> list[bytes]:
    """Frames ``numbers`` in Explicit VR Little Endian: native frames are cut from the pixel
    data (byte-swapped from big endian), compressed ones decoded (colour comes back RGB)."""
    if transfer_syntax in NATIVE and transfer_syntax != EXPLICIT_BE:
        return stored(ds, transfer_syntax, numbers)
    check_numbers(ds, numbers)
    out: list[bytes] = []
    multi = frame_count(ds) > 1
    for number in numbers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                arr = pixel_array(path, index=number - 1 if multi else None)
            except Exception as exc:
                raise FrameError(
                    406, f"frame {number} cannot be decoded here ({exc.__class__.__name__})"
                ) from None
        if multi and arr.ndim > 2 and arr.shape[0] == 1:
            arr = arr[0]
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        out.append(arr.tobytes())
    return out


def render(
    path: Path,
    frame: int,
    media_type: str,
    *,
    window: preview.Window | None,
    viewport: tuple[int, int] | None,
    quality: int,
) -> bytes:
    """Frame ``frame`` (1-based) as JPEG or PNG, windowed (PS3.18 8.3.5.1.3), fitted into
    ``viewport`` (rows, columns) keeping its aspect ratio."""
    try:
        rendered = preview.render(path, frame=frame - 1, window=window)
    except preview.FrameOutOfRange as exc:
        raise FrameError(404, exc.reason) from None
    except preview.NotRenderable as exc:
        raise FrameError(406, exc.reason) from None
    image = Image.fromarray(rendered.pixels)
    if viewport:
        rows, columns = viewport
        image.thumbnail((columns, rows))
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
