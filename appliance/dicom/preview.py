"""One frame of a DICOM instance rendered to an 8-bit PNG, for the screen and the API.

Grayscale images follow the standard pipeline (PS3.4 N.2.1.1): stored values -> Modality LUT or
Rescale Slope/Intercept (PS3.3 C.11.1) -> VOI: a window or a VOI LUT (PS3.3 C.11.2) ->
MONOCHROME1 inverted so that the lowest value is white (PS3.3 C.7.6.3.1.2) -> 8 bits.
Colour images (RGB; YBR_* converted to RGB; PALETTE COLOR through its palette, PS3.3 C.7.6.3.1.5)
are shown as colour, without a window. Enhanced multi-frame objects keep the rescale and window
of each frame in functional groups (PS3.3 C.7.6.16.2.9, C.7.6.16.2.10); they are honoured.

``WINDOW_PRESETS`` are the OHIF CT presets in Hounsfield units, for reuse (volume rendering).
They only make sense for CT stored in HU; on other images ``auto`` is used instead. An explicit
window (:func:`explicit_window`: centre and width in modality units, checked) overrides both on
any grey image, through the LINEAR function of PS3.3 C.11.2.1.2.1.
"""

from __future__ import annotations

import copy
import io
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, get_args

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
)
from pydicom.pixels.utils import pixel_array

from appliance.dicom import gdcm_fallback, orientation


@dataclass(frozen=True)
class Window:
    """A VOI window (PS3.3 C.11.2.1.2): ``width`` and ``center`` in modality units (HU for CT)."""

    width: float
    center: float


Preset = Literal["auto", "soft", "lung", "liver", "bone", "brain"]
PRESETS: Final[tuple[str, ...]] = get_args(Preset)
WINDOW_PRESETS: Final = MappingProxyType(
    {
        "soft": Window(400, 40),
        "lung": Window(1500, -600),
        "liver": Window(150, 90),
        "bone": Window(2500, 480),
        "brain": Window(80, 40),
    }
)
assert set(WINDOW_PRESETS) == set(PRESETS) - {"auto"}

# How the displayed grey levels were chosen, reported to the caller.
WindowSource = Literal["preset", "voi-lut", "window", "percentiles", "flat", "colour", "explicit"]
# Bounds of an explicit window (modality units): wide enough for any rescaled CT, MR or PET value.
WINDOW_CENTER_MAX: Final = 1_000_000.0
WINDOW_WIDTH_MAX: Final = 2_000_000.0
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_MODULE_KEYWORDS = (
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
)
# Functional groups of enhanced objects that carry the Modality LUT and VOI of a frame.
_FRAME_GROUPS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")


class NotRenderable(Exception):
    """The instance has no image to show, or its pixels cannot be decoded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FrameOutOfRange(NotRenderable):
    """The frame asked for does not exist in this instance."""


@dataclass(frozen=True)
class Rendered:
    """An 8-bit image: ``(rows, columns)`` grey or ``(rows, columns, 3)`` RGB."""

    pixels: NDArray[np.uint8]
    frame: int
    frames: int
    source: WindowSource
    preset: str | None = None
    window: Window | None = None
    assumption: str | None = None  # e.g. a misspelled RescaleType read as HU
    decoder: str | None = None  # a fallback decoder that decoded the pixels (gdcm), if any
    markers: orientation.Markers | None = None  # the edge letters (A/P, R/L, H/F), if known

    def png(self) -> bytes:
        """The image as PNG bytes (deterministic for identical pixels)."""
        out = io.BytesIO()
        Image.fromarray(self.pixels).save(out, format="PNG")
        return out.getvalue()


def explicit_window(center: float | None, width: float | None) -> Window | None:
    """The window asked for by ``center`` and ``width`` (None when neither is given).

    ValueError in plain words when only one is given, a value is not finite, the width is below
    1 (the LINEAR function needs ``width >= 1``, PS3.3 C.11.2.1.2.1) or a value is out of bounds
    (``|center| <= 1e6``, ``width <= 2e6``).
    """
    if center is None and width is None:
        return None
    if center is None or width is None:
        raise ValueError("give both the window center and the window width, or neither")
    if not (math.isfinite(center) and math.isfinite(width)):
        raise ValueError("the window center and width must be finite numbers")
    if not 1.0 <= width <= WINDOW_WIDTH_MAX:
        raise ValueError(f"the window width must be between 1 and {WINDOW_WIDTH_MAX:g}")
    if abs(center) > WINDOW_CENTER_MAX:
        raise ValueError(
            f"the window center must be between {-WINDOW_CENTER_MAX:g} and {WINDOW_CENTER_MAX:g}"
        )
    return Window(float(width), float(center))


_HU_SPELLINGS = re.compile(r"^(HU|H\.?U\.?|HOU?N[DS]{0,2}FI?ELD[ _-]?(UNITS?|NUMBERS?)?)$")


def hu_assumption(ds: Dataset, module: Dataset | None = None) -> str | None:
    """The note to show when a CT's Rescale Type is not the standard ``HU`` but a spelling of
    Hounsfield units (``Houndsfield Unit``, ``HOUNSFIELD``, ``H.U.``): the presets are applied
    on that assumption, and the response says so."""
    raw = str((module or ds).get("RescaleType", "") or "").strip()
    if str(ds.get("Modality", "")).upper() != "CT" or raw.upper() in ("", "HU"):
        return None
    if _HU_SPELLINGS.match(raw.upper()):
        return f"RescaleType {raw[:32]!r} read as HU"
    return None


def presets_apply(ds: Dataset, module: Dataset | None = None) -> bool:
    """Whether the HU presets mean anything here: CT whose rescale gives Hounsfield units.

    A CT Image's Rescale Type defaults to HU (PS3.3 C.8.2.1.1.2); enhanced CT states it.
    Misspelled Hounsfield units count too (see :func:`hu_assumption`).
    """
    if str(ds.get("Modality", "")).upper() != "CT":
        return False
    rescale_type = str((module or ds).get("RescaleType", "") or "").strip().upper()
    return rescale_type in ("", "HU") or hu_assumption(ds, module) is not None


def render(
    path: Path, *, frame: int = 0, preset: str = "auto", window: Window | None = None
) -> Rendered:
    """Render frame ``frame`` (0-based) of the DICOM file at ``path``.

    ``preset`` is ``auto`` (the file's VOI LUT or window, else the 1st-99th percentiles) or a
    name of :data:`WINDOW_PRESETS` (applied to CT in HU only; elsewhere ``auto`` is used).
    ``window`` (from :func:`explicit_window`) overrides the preset on grey images; colour images
    ignore it. Raises :class:`FrameOutOfRange` or :class:`NotRenderable` with a plain reason.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # Large values (the pixels) stay on disk until read; only one frame is decoded below.
            ds = pydicom.dcmread(path, defer_size="256 KB")
        except Exception as exc:
            raise NotRenderable(f"the file cannot be read ({exc.__class__.__name__})") from None
        if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
            raise NotRenderable("this instance holds no image (no Pixel Data)")
        frames = _int(ds.get("NumberOfFrames"), 1) or 1
        if not 0 <= frame < frames:
            raise FrameOutOfRange(
                f"frame {frame} does not exist: this instance has {frames} frame(s), "
                f"numbered 0 to {frames - 1}"
            )
        try:
            gdcm_fallback.mark_unused()
            with open(path, "rb") as stream:
                # as_rgb (default): YBR_FULL / YBR_FULL_422 come back as RGB (PS3.3 C.7.6.3.1.2).
                arr = pixel_array(stream, index=frame if frames > 1 else None)
        except Exception as exc:
            raise NotRenderable(
                f"the pixel data cannot be decoded ({exc.__class__.__name__})"
            ) from None
        if frames > 1 and arr.ndim > 2 and arr.shape[0] == 1:
            arr = arr[0]
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        samples = _int(ds.get("SamplesPerPixel"), 1)
        if photometric == "PALETTE COLOR":
            result = Rendered(_palette(arr, ds), frame, frames, "colour")
        elif samples == 3 or arr.ndim == 3:
            result = Rendered(_colour(arr, ds), frame, frames, "colour")
        else:
            result = _grey(arr, ds, frame, frames, preset, photometric, window)
        return replace(result, decoder=gdcm_fallback.last_decoder(),
                       markers=orientation.frame_markers(ds, frame))


def _grey(
    arr: NDArray[np.generic],
    ds: Dataset,
    frame: int,
    frames: int,
    preset: str,
    photometric: str,
    explicit: Window | None = None,
) -> Rendered:
    module = frame_module(ds, frame)
    values = apply_modality_lut(arr, module)
    unit: NDArray[np.float64]
    window: Window | None = None
    applied: str | None = None
    assumption: str | None = None
    source: WindowSource
    if explicit is not None:
        window, source = explicit, "explicit"
        unit = _window(values, module, window, "LINEAR")
    elif preset != "auto" and presets_apply(ds, module):
        window, applied, source = WINDOW_PRESETS[preset], preset, "preset"
        assumption = hu_assumption(ds, module)
        unit = _window(values, module, window, "LINEAR")
    else:
        unit, window, source = _auto(values, module)
    grey = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    if photometric == "MONOCHROME1":
        # PS3.3 C.7.6.3.1.2: the minimum value is displayed white, after the VOI transformation.
        grey = np.subtract(np.uint8(255), grey)
    return Rendered(grey, frame, frames, source, applied, window, assumption)


def _auto(
    values: NDArray[np.generic], module: Dataset
) -> tuple[NDArray[np.float64], Window | None, WindowSource]:
    """The file's own VOI (VOI LUT Sequence first, then Window Center/Width, PS3.3 C.11.2),
    else a window over the 1st to 99th percentile of the frame."""
    voi = module.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        # A VOI LUT indexes by whole stored-or-rescaled values.
        whole = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values
        try:
            mapped = apply_voi(whole, module).astype(np.float64)
            # Every entry of the LUT, to scale its output range to 0..1.
            lut = np.asarray(apply_voi(np.arange(-(2**16), 2**17), module), dtype=np.float64)
            low, high = float(lut.min()), float(lut.max())
            if high > low:
                return (mapped - low) / (high - low), None, "voi-lut"
        except (ValueError, NotImplementedError, AttributeError, IndexError, TypeError):
            pass
    center, width = _first(module.get("WindowCenter")), _first(module.get("WindowWidth"))
    if center is not None and width is not None:
        function = str(module.get("VOILUTFunction", "") or "LINEAR").strip().upper()
        try:
            return (
                _window(values, module, Window(width, center), function),
                Window(width, center),
                "window",
            )
        except ValueError:
            pass  # a width below 1 or an unknown function: fall back to the percentiles
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return np.zeros(np.shape(values)), None, "flat"
    low, high = (float(v) for v in np.percentile(finite, [1.0, 99.0]))
    if high <= low:
        return np.zeros(np.shape(values)), None, "flat"
    window = Window(high - low, (high + low) / 2)
    return _window(values, module, window, "LINEAR_EXACT"), window, "percentiles"


def _window(
    values: NDArray[np.generic], module: Dataset, window: Window, function: str
) -> NDArray[np.float64]:
    """Apply ``window`` with pydicom's windowing (PS3.3 C.11.2.1.2/3) and scale to 0..1.

    pydicom maps into the range the stored values could take; that range is found by pushing
    the two extremes through the same operation, so the scaling matches whatever it used.
    """
    probe = Dataset()
    for keyword in ("BitsStored", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
        if keyword in module:
            probe.add(copy.deepcopy(module[keyword]))
    if "ModalityLUTSequence" in module:
        probe.ModalityLUTSequence = module.ModalityLUTSequence
    probe.WindowCenter = float(window.center)
    probe.WindowWidth = float(window.width)
    probe.VOILUTFunction = function
    probe.PhotometricInterpretation = "MONOCHROME2"
    with np.errstate(over="ignore"):
        out = apply_windowing(np.asarray(values), probe)
        ends = apply_windowing(np.array([-1e300, 1e300]), probe)
    low, high = float(ends[0]), float(ends[1])
    if not high > low:
        raise ValueError("the window's output range is empty")
    return (np.asarray(out, dtype=np.float64) - low) / (high - low)


def frame_module(ds: Dataset, frame: int) -> Dataset:
    """The Image Pixel, Modality LUT and VOI LUT attributes that apply to ``frame``.

    Enhanced multi-frame objects hold rescale and window in the Shared or Per-frame Functional
    Groups (Pixel Value Transformation, Frame VOI LUT); a per-frame value wins over a shared
    one, which wins over a top-level one.
    """
    module = Dataset()
    if hasattr(ds, "file_meta"):
        module.file_meta = ds.file_meta
    for keyword in _MODULE_KEYWORDS:
        if keyword in ds:
            module.add(copy.deepcopy(ds[keyword]))
    groups: list[Dataset] = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    for group in groups:
        for name in _FRAME_GROUPS:
            items = group.get(name)
            if not items:
                continue
            for element in items[0]:
                if element.keyword in _MODULE_KEYWORDS:
                    module.add(copy.deepcopy(element))
    return module


def _palette(arr: NDArray[np.generic], ds: Dataset) -> NDArray[np.uint8]:
    try:
        rgb = apply_color_lut(arr, ds)
    except Exception as exc:
        raise NotRenderable(
            f"the palette colour lookup table cannot be applied ({exc.__class__.__name__})"
        ) from None
    bits = 16 if rgb.dtype.itemsize > 1 else 8
    return _to_uint8(rgb, bits)


def _colour(arr: NDArray[np.generic], ds: Dataset) -> NDArray[np.uint8]:
    bits = _int(ds.get("BitsStored"), 8) or 8
    return _to_uint8(arr, bits if arr.dtype.itemsize > 1 else 8)


def _to_uint8(arr: NDArray[np.generic], bits: int) -> NDArray[np.uint8]:
    if arr.dtype == np.uint8:
        return arr.astype(np.uint8)
    scale = float(2**bits - 1)
    scaled = np.clip(np.asarray(arr, dtype=np.float64) / scale, 0.0, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8)


def _first(value: object) -> float | None:
    """The first of a multi-valued DS (index 0 is the primary view, PS3.3 C.11.2.1.2)."""
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return default
