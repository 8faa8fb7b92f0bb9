"""A projection radiograph (CR, DX) read from its DICOM file for the model.

Which image of a series: frontal views first (View Position PA, then AP, PS3.3 C.8.11.5), then
any view that is not lateral, then the rest; ties by Instance Number, then SOP Instance UID.

Grey levels: an 8-bit MONOCHROME image with no Modality LUT, rescale or VOI (typically a
secondary capture of an already processed radiograph) is sent as stored, inverted when
MONOCHROME1. Anything else goes through the display pipeline of :mod:`appliance.dicom.preview`
(Modality LUT, the file's VOI window or LUT, else the 1st-99th percentiles; MONOCHROME1
inverted so that bone is bright, PS3.3 C.7.6.3.1.2). Colour images are turned to grey (ITU-R
601 luma, as PIL's ``L`` mode).

Spacing for sizes in mm: Pixel Spacing (0028,0030) when present (calibrated to the patient,
PS3.3 10.7.1.3), else Imager Pixel Spacing (0018,1164), which is measured at the detector and so
includes the geometric magnification (PS3.3 C.8.11.4.1.1); the source is recorded with every
size so a reviewer knows which one it is.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset

from appliance.dicom import preview

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
SpacingSource = Literal["PixelSpacing", "ImagerPixelSpacing"]
_VOI_KEYWORDS = (
    "ModalityLUTSequence",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "VOILUTSequence",
)


class NotARadiograph(Exception):
    """The file cannot be used as a radiograph for the model; the message says why."""


@dataclass(frozen=True, slots=True)
class Spacing:
    """Row and column spacing in mm and the attribute they come from."""

    row_mm: float
    col_mm: float
    source: SpacingSource


@dataclass(frozen=True, slots=True)
class Radiograph:
    """One radiograph's grey levels and what is needed to map boxes back."""

    pixels: NDArray[np.uint8]  # (rows, cols), bright = dense
    monochrome1: bool  # the stored image was MONOCHROME1
    inverted_here: bool  # pixels still need the MONOCHROME1 inversion (as-stored path)
    spacing: Spacing | None
    view_position: str | None
    burned_in: bool = False  # Burned In Annotation (0028,0301) is YES: text in the pixels


def _spacing(ds: Dataset) -> Spacing | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is None or len(value) != 2:
            continue
        try:
            row_mm, col_mm = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            continue
        if all(math.isfinite(v) and v > 0 for v in (row_mm, col_mm)):
            source: SpacingSource = keyword
            return Spacing(row_mm, col_mm, source)
    return None


def view_rank(view_position: str | None) -> int:
    """Sort key of a view: PA 0, AP 1, other non-lateral 2, lateral 3."""
    view = (view_position or "").strip().upper()
    if view == "PA":
        return 0
    if view == "AP":
        return 1
    if view in ("LL", "RL", "LAT", "LATERAL") or view.startswith(("LL", "RL")):
        return 3
    return 2


def read_view_position(path: Path) -> str | None:
    """View Position (0018,5101) of a stored file, or None (header only, pixels not read)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # an unreadable header sorts last; the reading below says why
            return None
    value = ds.get("ViewPosition")
    return (str(value).strip() or None) if value else None


def _grey(pixels: NDArray[Any]) -> NDArray[np.uint8]:
    if pixels.ndim == 2:
        return pixels.astype(np.uint8)
    grey = Image.fromarray(np.ascontiguousarray(pixels.astype(np.uint8))).convert("L")
    return np.asarray(grey, dtype=np.uint8)


def read_radiograph(path: Path) -> Radiograph:
    """Read one radiograph for the model (see the module docstring); raises
    :class:`NotARadiograph` with a plain reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise NotARadiograph(f"the file cannot be read ({exc.__class__.__name__})") from None
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    burned_in = str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise NotARadiograph(f"a radiograph is one frame; this instance has {frames}")
    spacing = _spacing(ds)
    view = ds.get("ViewPosition")
    view_position = (str(view).strip() or None) if view else None
    monochrome1 = photometric == "MONOCHROME1"
    as_stored = (
        photometric in ("MONOCHROME1", "MONOCHROME2")
        and int(ds.get("BitsStored") or 0) == 8
        and not any(keyword in ds for keyword in _VOI_KEYWORDS)
    )
    if as_stored:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                stored = pydicom.dcmread(path).pixel_array
            except Exception as exc:
                raise NotARadiograph(
                    f"the pixel data cannot be decoded ({exc.__class__.__name__})"
                ) from None
        if stored.ndim != 2:
            raise NotARadiograph(f"a radiograph is a 2D image, got shape {stored.shape}")
        return Radiograph(
            stored.astype(np.uint8), monochrome1, monochrome1, spacing, view_position, burned_in
        )
    try:
        rendered = preview.render(path)
    except preview.NotRenderable as exc:
        raise NotARadiograph(exc.reason) from None
    return Radiograph(_grey(rendered.pixels), monochrome1, False, spacing, view_position, burned_in)
