"""Reconstruct the 3D volumes of one DICOM series, with geometry QA notes.

``build_volumes(files)`` (or ``build_volumes_from_datasets``) turns the images of one series
into a list of ``VolumeResult``: voxels as (z, y, x) plus origin, spacing and direction cosines in
DICOM patient coordinates (LPS). Classic images (one file per slice, PS3.3 C.7.6.2), Siemens
mosaics and enhanced multi-frame objects (per-frame functional groups, PS3.3 C.7.6.16) go through
the same steps:

1. Every frame gets its plane (Image Position/Orientation (Patient)), pixel spacing, rescale and
   its non-spatial keys (stack, frame type, echo, diffusion, temporal position, acquisition,
   dimension index values, PS3.3 C.7.6.17).
2. Images without a patient plane, projection modalities (CR, DX, MG, XA, RF, IO, PX) and series
   that mix slice orientations are returned one 2D image per result, flagged ``not_a_volume``.
3. Where slice positions repeat, the frames are split by the first non-spatial key that differs
   (frame type such as magnitude vs field map, echo, diffusion, time, acquisition), and failing
   all of those by the order of repeats (Instance Number), so a 4D series gives one 3D volume
   per time point (``split_4d``) rather than a stack of repeated slices.
4. Each stack is sorted by the position projected on the slice normal; spacing comes from those
   positions, never from Slice Thickness.
5. Missing slices: a step larger than 1.5x the median step that is not a deliberate change of
   spacing (see ``geometry.find_gaps``) splits the stack into separate volumes, one per
   contiguous block, each flagged ``missing_slices`` with the place of the gap. We never
   interpolate across a gap, and never put slices on both sides of one into the same volume:
   one affine cannot describe them. A block of a single slice is also ``not_a_volume``.
6. Gantry tilt (slices sheared in-plane, the step not parallel to the normal) is corrected by
   shifting each slice in-plane onto an orthogonal grid with linear interpolation, as dcm2niix
   does; the grid is widened so no voxel is cut off, and the new border gets the smallest value
   of the stack (dcm2niix's choice too). Noted ``gantry_tilt_corrected`` with the angle.
7. Variable slice spacing is resampled (linear, along the normal) to the smallest step, capped
   at twice the number of slices (dcm2niix's rule, ``geometry.uniform_grid``); the original
   steps are in the ``variable_spacing_resampled`` note.

Values: Rescale Slope/Intercept are applied per frame (CT comes out in HU). The dtype holds the
full range: integers when every slope and intercept is integral (int16 when the range fits, else
int32; resampled values are rounded to the nearest integer, as dcm2niix does), float32 otherwise.
Palette-colour images and derived maps carrying a (supplemental) palette colour LUT are not HU:
their stored values are kept and noted ``stored_values_not_hu``.

Memory: the headers are read first (Pixel Data deferred, not read), the slices are sorted and
the geometry planned from them, each volume is allocated once in its output dtype and every
frame is decoded on its own (plain uncompressed little-endian data read from the file straight
into an array, no pydicom decoder) and put into its slot (int16 output widened to int32 only if a
slice needs it), its Pixel Data dropped again after the decode. Tilt correction and spacing
resampling work one slice at a time (per-slice in-plane shifts, each output slice from its two
neighbours) on the stored values of the stack, kept in their decoded dtype up to half the size
of the output and decoded again beyond that; so a build needs about the volume plus at most
half of it, never a float copy of the whole stack.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import pixel_array

from appliance.volumes import geometry

FloatArray = NDArray[np.float64]

# Note codes.
GANTRY_TILT_CORRECTED = "gantry_tilt_corrected"
VARIABLE_SPACING_RESAMPLED = "variable_spacing_resampled"
SPLIT_4D = "split_4d"
SPLIT_NON_SPATIAL = "split_non_spatial"
MISSING_SLICES = "missing_slices"
NOT_A_VOLUME = "not_a_volume"
STORED_VALUES_NOT_HU = "stored_values_not_hu"
RESCALE_NOT_HU = "rescale_not_hu"
MONOCHROME1 = "monochrome1"
MOSAIC_UNPACKED = "mosaic_unpacked"
MULTIPLE_SERIES = "multiple_series"

PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "XA", "RF", "IO", "PX"})

# Keys tried, in this order, to separate frames that share a slice position.
_SPLIT_KEYS = (
    "series",
    "stack",
    "frame_type",
    "echo",
    "diffusion",
    "temporal",
    "acquisition",
    "dimension",
)
_TIME_KEYS = frozenset({"temporal", "acquisition"})
# Keys accepted only when every group they make has unique positions.
_STRICT_KEYS = frozenset({"series", "acquisition", "dimension"})
_KEY_NAMES = {
    "series": "series (Series Instance UID / Series Number)",
    "stack": "Stack ID",
    "frame_type": "frame type",
    "echo": "echo",
    "diffusion": "diffusion b-value/direction",
    "temporal": "temporal position",
    "acquisition": "Acquisition Number",
    "dimension": "dimension index values",
}
_FRAME_TYPE_WORDS = {
    "M": "magnitude",
    "MAGNITUDE": "magnitude",
    "P": "phase",
    "PHASE": "phase",
    "R": "real",
    "REAL": "real",
    "I": "imaginary",
    "IMAGINARY": "imaginary",
    "FIELD_MAP": "field map",
    "B0_MAP": "field map",
    "B0MAP": "field map",
}
# Dimension index pointers that are spatial (handled by the plane position instead).
_SPATIAL_DIMENSIONS = frozenset({0x00209056, 0x00209057, 0x00200032})


class VolumeError(ValueError):
    """The input cannot be reconstructed at all (not DICOM, no pixels, undecodable, colour)."""


@dataclass(frozen=True, slots=True)
class QANote:
    """One geometry or value finding: a stable code, a plain-English sentence, and figures."""

    code: str
    text: str
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(slots=True, eq=False)
class VolumeResult:
    """One reconstructed volume (or a lone 2D image flagged ``not_a_volume``).

    ``voxels`` is (z, y, x); ``origin`` is the centre of voxel (0, 0, 0) in LPS mm;
    ``spacing`` is (x, y, z) in mm; ``direction`` holds the unit x, y, z axis directions as
    columns (x along a row, y down a column, z along the slice normal).
    """

    voxels: NDArray[Any]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: FloatArray
    notes: list[QANote]
    label: str
    modality: str = ""
    series_instance_uid: str = ""
    frame_count: int = 0

    @property
    def affine(self) -> FloatArray:
        """Voxel index (x, y, z) to LPS mm."""
        return geometry.affine_lps(self.origin, self.spacing, self.direction)

    @property
    def is_volume(self) -> bool:
        """False for images flagged ``not_a_volume``."""
        return not self.has_note(NOT_A_VOLUME)

    def has_note(self, code: str) -> bool:
        """True when a note with this code is attached."""
        return any(note.code == code for note in self.notes)

    def note(self, code: str) -> QANote | None:
        """The first note with this code, if any."""
        return next((note for note in self.notes if note.code == code), None)


@dataclass(slots=True)
class _Frame:
    """One 2D image: a classic file, a frame of a multi-frame object, or a mosaic tile."""

    dataset: Dataset
    order: int
    frame_index: int | None = None
    tile: tuple[int, int] | None = None
    position: FloatArray | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    thickness: float | None = None
    rows: int = 0
    columns: int = 0
    slope: float = 1.0
    intercept: float = 0.0
    rescale_type: str = ""
    instance: int | None = None
    keys: dict[str, Hashable] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Stack:
    frames: list[_Frame]
    labels: list[str]
    notes: list[QANote]


def build_volumes(files: Sequence[Path]) -> list[VolumeResult]:
    """Read the DICOM files of one series and reconstruct its volumes.

    Only the headers are read: pydicom defers every value longer than 16 KiB, Pixel Data
    included (encapsulated too), to its first access, and each image is read and decoded when
    its slot in the output is filled (see :class:`_PixelReader`).
    """
    datasets = []
    for path in files:
        try:
            dataset = pydicom.dcmread(path, defer_size=_DEFER_BYTES)
        except (InvalidDicomError, OSError) as exc:
            raise VolumeError(f"{path.name}: not a readable DICOM file ({exc})") from exc
        dataset.filename = str(path)
        datasets.append(dataset)
    for dataset in datasets:
        _check_pixels(dataset)
    return _build(datasets, _PixelReader(release=True))


def build_volumes_from_datasets(datasets: Sequence[Dataset]) -> list[VolumeResult]:
    """Reconstruct the volumes of one series from already-read datasets (with pixel data)."""
    for dataset in datasets:
        _check_pixels(dataset)
    return _build(datasets, _PixelReader(release=False))


def _build(datasets: Sequence[Dataset], pixels: _PixelReader) -> list[VolumeResult]:
    if not datasets:
        raise VolumeError("no images given")
    frames: list[_Frame] = []
    series_notes: list[QANote] = []
    for file_order, dataset in enumerate(datasets):
        frames.extend(_frames_of(dataset, file_order, series_notes))
    series_notes.extend(_value_notes(datasets))
    series = {_series_key(ds) for ds in datasets}
    if len(series) > 1:
        series_notes.append(
            QANote(
                MULTIPLE_SERIES,
                f"The input mixes {len(series)} series (Series Instance UID / Series Number).",
                {"series": len(series)},
            )
        )
    first = datasets[0]
    context = _Context(
        pixels=pixels,
        keep_stored=any(_keeps_stored_values(ds) for ds in datasets),
        modality=str(first.get("Modality", "")),
        series_uid=str(first.get("SeriesInstanceUID", "")),
        series_notes=series_notes,
    )
    try:
        return _reconstruct(frames, context)
    finally:
        pixels.close()


@dataclass(slots=True)
class _Context:
    pixels: _PixelReader
    keep_stored: bool
    modality: str
    series_uid: str
    series_notes: list[QANote]


# Pixel Data, Float Pixel Data, Double Float Pixel Data (PS3.3 C.7.6.3).
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
# Values longer than this are not read with the header (pydicom defers them to first access).
_DEFER_BYTES = 16 * 1024
# Stored values kept between the two passes of a resampled stack, as a fraction of its output.
_SOURCE_BUDGET = 0.5


def _decode(dataset: Dataset, index: int | None) -> NDArray[Any]:
    """Stored values of one frame (``index``) or of the whole image (None): plain uncompressed
    data read straight into an array (:func:`_read_native`), anything else decoded by pydicom;
    a deferred Pixel Data value is read from the dataset's file."""
    native = _read_native(dataset, index)
    if native is not None:
        return native
    return np.asarray(pixel_array(dataset, index=index))


class _PixelReader:
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

    def frame(self, frame: _Frame) -> NDArray[Any]:
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
            return _decode(dataset, index)
        if self._loaded is None or self._loaded[0] is not dataset:
            self._unload()
            elements = [
                (tag, dataset.get_item(tag, keep_deferred=True))
                for tag in _PIXEL_TAGS
                if tag in dataset
            ]
            self._loaded = (dataset, elements)
        try:
            return _decode(dataset, index)
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


def _read_native(dataset: Dataset, index: int | None) -> NDArray[Any] | None:
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


def _check_pixels(dataset: Dataset) -> None:
    name = Path(str(getattr(dataset, "filename", "") or "dataset")).name
    if not any(tag in dataset for tag in _PIXEL_TAGS):
        raise VolumeError(f"{name}: no pixel data")
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise VolumeError(f"{name}: colour images (SamplesPerPixel > 1) are not reconstructed")


# ---- reading frames -------------------------------------------------------------------------


def _floats(value: Any) -> tuple[float, ...] | None:
    if value is None or value == "":
        return None
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None


def _float(value: Any, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _frame_type_label(tokens: Sequence[str]) -> str:
    for token in tokens:
        word = _FRAME_TYPE_WORDS.get(token.upper())
        if word:
            return word
    return "/".join(tokens).lower() or "frame type"


def _frames_of(dataset: Dataset, file_order: int, notes: list[QANote]) -> list[_Frame]:
    if "PerFrameFunctionalGroupsSequence" in dataset:
        return _enhanced_frames(dataset, file_order)
    mosaic = _mosaic_count(dataset)
    if mosaic:
        return _mosaic_frames(dataset, file_order, mosaic, notes)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        return [_classic_frame(dataset, file_order * 1_000_000)]
    # A multi-frame object without per-frame geometry (cine, NM): frames are not slices.
    result = []
    for index in range(frames):
        frame = _classic_frame(dataset, file_order * 1_000_000 + index)
        frame.frame_index = index
        frame.position = None
        result.append(frame)
    return result


def _classic_frame(dataset: Dataset, order: int) -> _Frame:
    """A classic image: plane from C.7.6.2, values from the Modality LUT module (C.11.1)."""
    image_type = [str(v) for v in (dataset.get("ImageType") or [])]
    position = _floats(dataset.get("ImagePositionPatient"))
    frame = _Frame(
        dataset=dataset,
        order=order,
        position=np.asarray(position, dtype=np.float64)
        if position and len(position) == 3
        else None,
        orientation=_floats(dataset.get("ImageOrientationPatient")),
        pixel_spacing=_pixel_spacing(dataset),
        thickness=_float(dataset.get("SpacingBetweenSlices"))
        or _float(dataset.get("SliceThickness")),
        rows=int(dataset.Rows),
        columns=int(dataset.Columns),
        slope=_float(dataset.get("RescaleSlope"), 1.0) or 1.0,
        intercept=_float(dataset.get("RescaleIntercept"), 0.0) or 0.0,
        rescale_type=str(dataset.get("RescaleType", "")),
        instance=_int(dataset.get("InstanceNumber")),
    )
    if frame.orientation is not None and len(frame.orientation) != 6:
        frame.orientation = None
    echo = _int(dataset.get("EchoNumbers"))
    temporal = _int(dataset.get("TemporalPositionIdentifier"))
    temporal_count = _int(dataset.get("NumberOfTemporalPositions"))
    acquisition = _int(dataset.get("AcquisitionNumber"))
    b_value = _float(dataset.get("DiffusionBValue"))
    frame.keys = {
        "series": _series_key(dataset),
        "frame_type": tuple(image_type[2:]),
        "echo": echo,
        "diffusion": b_value,
        "temporal": temporal,
        "acquisition": acquisition,
    }
    frame.labels = {
        "series": f"series {dataset.get('SeriesNumber', '')}".strip(),
        "frame_type": _frame_type_label(image_type[2:]),
        "echo": f"echo {echo}",
        "diffusion": f"b={b_value:g}" if b_value is not None else "no diffusion",
        "temporal": f"time {temporal}" + (f" of {temporal_count}" if temporal_count else ""),
        "acquisition": f"acquisition {acquisition}",
    }
    return frame


def _series_key(dataset: Dataset) -> tuple[str, int | None]:
    return (str(dataset.get("SeriesInstanceUID", "")), _int(dataset.get("SeriesNumber")))


def _pixel_spacing(item: Dataset) -> tuple[float, float] | None:
    spacing = _floats(item.get("PixelSpacing")) or _floats(item.get("ImagerPixelSpacing"))
    if spacing is None or len(spacing) != 2 or min(spacing) <= 0:
        return None
    return (spacing[0], spacing[1])


def _group_item(dataset: Dataset, per_frame: Dataset, keyword: str) -> Dataset | None:
    """A functional group macro for one frame: per-frame first, else shared (C.7.6.16)."""
    for container in (per_frame, _shared(dataset)):
        if container is not None and keyword in container and len(container[keyword].value):
            item: Dataset = container[keyword].value[0]
            return item
    return None


def _shared(dataset: Dataset) -> Dataset | None:
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared:
        item: Dataset = shared[0]
        return item
    return None


def _frame_type_item(dataset: Dataset, per_frame: Dataset) -> Dataset | None:
    for container in (per_frame, _shared(dataset)):
        if container is None:
            continue
        for element in container:
            if element.keyword.endswith("FrameTypeSequence") and len(element.value):
                item: Dataset = element.value[0]
                return item
    return None


def _enhanced_frames(dataset: Dataset, file_order: int) -> list[_Frame]:
    """Frames of an enhanced multi-frame object from its functional groups (PS3.3 C.7.6.16)."""
    pointers = [
        int(item.DimensionIndexPointer)
        for item in dataset.get("DimensionIndexSequence") or []
        if "DimensionIndexPointer" in item
    ]
    frames = []
    top_slope = _float(dataset.get("RescaleSlope"), 1.0) or 1.0
    top_intercept = _float(dataset.get("RescaleIntercept"), 0.0) or 0.0
    for index, per_frame in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        position_item = _group_item(dataset, per_frame, "PlanePositionSequence")
        orientation_item = _group_item(dataset, per_frame, "PlaneOrientationSequence")
        measures = _group_item(dataset, per_frame, "PixelMeasuresSequence")
        transform = _group_item(dataset, per_frame, "PixelValueTransformationSequence")
        content = _group_item(dataset, per_frame, "FrameContentSequence")
        echo_item = _group_item(dataset, per_frame, "MREchoSequence")
        diffusion_item = _group_item(dataset, per_frame, "MRDiffusionSequence")
        type_item = _frame_type_item(dataset, per_frame)

        position = _floats(position_item.get("ImagePositionPatient")) if position_item else None
        orientation = (
            _floats(orientation_item.get("ImageOrientationPatient")) if orientation_item else None
        )
        frame = _Frame(
            dataset=dataset,
            order=file_order * 1_000_000 + index,
            frame_index=index,
            position=np.asarray(position, dtype=np.float64)
            if position and len(position) == 3
            else None,
            orientation=orientation if orientation and len(orientation) == 6 else None,
            pixel_spacing=_pixel_spacing(measures) if measures else None,
            thickness=(
                _float(measures.get("SpacingBetweenSlices"))
                or _float(measures.get("SliceThickness"))
            )
            if measures
            else None,
            rows=int(dataset.Rows),
            columns=int(dataset.Columns),
            slope=(_float(transform.get("RescaleSlope"), 1.0) or 1.0) if transform else top_slope,
            intercept=(_float(transform.get("RescaleIntercept"), 0.0) or 0.0)
            if transform
            else top_intercept,
            rescale_type=str(transform.get("RescaleType", "")) if transform else "",
            instance=None,
        )
        frame_type = [str(v) for v in (type_item.get("FrameType") or [])] if type_item else []
        component = str(type_item.get("ComplexImageComponent", "")) if type_item else ""
        type_tokens = tuple(frame_type[2:]) + ((component,) if component else ())
        echo_time = _float(echo_item.get("EffectiveEchoTime")) if echo_item else None
        b_value = _float(diffusion_item.get("DiffusionBValue")) if diffusion_item else None
        direction: tuple[float, ...] | None = None
        if diffusion_item and diffusion_item.get("DiffusionGradientDirectionSequence"):
            direction = _floats(
                diffusion_item.DiffusionGradientDirectionSequence[0].get(
                    "DiffusionGradientOrientation"
                )
            )
        temporal = _int(content.get("TemporalPositionIndex")) if content else None
        acquisition = _int(content.get("FrameAcquisitionNumber")) if content else None
        stack = str(content.get("StackID", "")) if content else ""
        values = list(content.get("DimensionIndexValues") or []) if content else []
        if isinstance(values, int):
            values = [values]
        dimension = tuple(
            int(v)
            for v, pointer in zip(values, pointers, strict=False)
            if pointer not in _SPATIAL_DIMENSIONS
        )
        frame.keys = {
            "series": _series_key(dataset),
            "stack": stack,
            "frame_type": tuple(frame_type[3:4]) or type_tokens,
            "echo": round(echo_time, 4) if echo_time is not None else None,
            "diffusion": (b_value, tuple(round(v, 4) for v in direction) if direction else None)
            if b_value is not None
            else None,
            "temporal": temporal,
            "acquisition": acquisition,
            "dimension": dimension,
        }
        frame.labels = {
            "series": f"series {dataset.get('SeriesNumber', '')}".strip(),
            "stack": f"stack {stack}",
            "frame_type": _frame_type_label([*frame_type[3:4], component]),
            "echo": f"TE {echo_time:g} ms" if echo_time is not None else "echo",
            "diffusion": f"b={b_value:g}" if b_value is not None else "no diffusion",
            "temporal": f"time {temporal}",
            "acquisition": f"acquisition {acquisition}",
            "dimension": "dimension index " + ",".join(str(v) for v in dimension),
        }
        frames.append(frame)
    return frames


def _mosaic_count(dataset: Dataset) -> int:
    """Number of slices in a Siemens mosaic image (0 if the image is not a mosaic)."""
    image_type = [str(v).upper() for v in (dataset.get("ImageType") or [])]
    if "MOSAIC" not in image_type:
        return 0
    csa = _siemens_csa(dataset)
    count = csa.get("NumberOfImagesInMosaic") if csa else None
    if not count:
        count = _int(dataset.get((0x0019, 0x100A)).value) if (0x0019, 0x100A) in dataset else None
    return int(count or 0)


def _siemens_csa(dataset: Dataset) -> dict[str, Any] | None:
    """Siemens CSA image header fields used for mosaics (NumberOfImagesInMosaic, normal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader

        try:
            header = csareader.get_csa_header(dataset, "image")  # type: ignore[no-untyped-call]
        except Exception:  # a malformed private header is treated as absent
            return None
        if not header:
            return None
        fields: dict[str, Any] = {}
        try:
            fields["NumberOfImagesInMosaic"] = csareader.get_n_mosaic(header)  # type: ignore[no-untyped-call]
            normal = csareader.get_slice_normal(header)  # type: ignore[no-untyped-call]
            fields["SliceNormalVector"] = None if normal is None else np.asarray(normal, float)
        except Exception:
            return None
        return fields


def _mosaic_frames(
    dataset: Dataset, file_order: int, count: int, notes: list[QANote]
) -> list[_Frame]:
    """Tiles of a Siemens mosaic as slices (the layout nibabel and dcm2niix use).

    The mosaic's IPP refers to the whole mosaic matrix; the first tile's position is shifted by
    half the difference between mosaic and tile size. Tiles step along the CSA slice normal by
    Spacing Between Slices (mosaics carry no per-slice position).
    """
    tiles_per_side = math.ceil(math.sqrt(count))
    base = _classic_frame(dataset, file_order * 1_000_000)
    rows, columns = base.rows // tiles_per_side, base.columns // tiles_per_side
    if base.orientation is None or base.position is None or base.pixel_spacing is None:
        return [base]
    direction = geometry.direction_cosines(base.orientation)
    csa = _siemens_csa(dataset) or {}
    normal = csa.get("SliceNormalVector")
    if normal is None:
        normal = direction[:, 2]
    step = base.thickness or 1.0
    row_spacing, column_spacing = base.pixel_spacing
    first = (
        base.position
        + direction[:, 1] * row_spacing * (base.rows - rows) / 2
        + direction[:, 0] * column_spacing * (base.columns - columns) / 2
    )
    frames = []
    for index in range(count):
        frame = _classic_frame(dataset, file_order * 1_000_000 + index)
        frame.tile = (index // tiles_per_side, index % tiles_per_side)
        frame.rows, frame.columns = rows, columns
        frame.position = first + index * step * np.asarray(normal, dtype=np.float64)
        frame.instance = None
        frames.append(frame)
    if not any(note.code == MOSAIC_UNPACKED for note in notes):
        notes.append(
            QANote(
                MOSAIC_UNPACKED,
                f"Siemens mosaic of {count} slices unpacked ({tiles_per_side}x{tiles_per_side} "
                f"tiles of {columns}x{rows}); slice positions follow the CSA slice normal at "
                f"{step:g} mm.",
                {"slices": count, "tiles_per_side": tiles_per_side},
            )
        )
    return frames


# ---- values ---------------------------------------------------------------------------------


def _keeps_stored_values(dataset: Dataset) -> bool:
    """Palette colour (C.7.9) or a supplemental palette LUT (PS3.3 C.7.6.19): not HU."""
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        return True
    return "RedPaletteColorLookupTableDescriptor" in dataset


def _value_notes(datasets: Sequence[Dataset]) -> list[QANote]:
    notes = []
    first = datasets[0]
    if any(_keeps_stored_values(ds) for ds in datasets):
        image_type = "\\".join(str(v) for v in (first.get("ImageType") or []))
        notes.append(
            QANote(
                STORED_VALUES_NOT_HU,
                f"Derived or palette-colour image (ImageType {image_type or 'unknown'}) with a "
                "palette colour lookup table: stored values are kept, not converted to HU or "
                "other units.",
                {"image_type": image_type},
            )
        )
    if any(
        str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" for ds in datasets
    ):
        notes.append(
            QANote(
                MONOCHROME1,
                "MONOCHROME1: higher values are displayed darker; values are kept as stored.",
            )
        )
    return notes


def _rescaled(pixels: NDArray[Any], frame: _Frame, keep_stored: bool) -> FloatArray:
    """Stored values times slope plus intercept, as a new float64 array (computed in place)."""
    values = np.array(pixels, dtype=np.float64)
    if keep_stored:
        return values
    values *= frame.slope
    values += frame.intercept
    return values


def _integral(frames: Iterable[_Frame], keep_stored: bool) -> bool:
    if keep_stored:
        return True
    return all(float(f.slope).is_integer() and float(f.intercept).is_integer() for f in frames)


def _to_output_dtype(values: FloatArray, integral: bool) -> NDArray[Any]:
    """int16 when the rounded range fits, else int32; float32 for non-integral values."""
    if not integral:
        return values.astype(np.float32)
    rounded = np.rint(values)
    low, high = (float(rounded.min()), float(rounded.max())) if rounded.size else (0.0, 0.0)
    info16 = np.iinfo(np.int16)
    if info16.min <= low and high <= info16.max:
        return rounded.astype(np.int16)
    return rounded.astype(np.int32)


# ---- reconstruction -------------------------------------------------------------------------


def _reconstruct(frames: list[_Frame], context: _Context) -> list[VolumeResult]:
    flat = [
        f for f in frames if f.position is None or f.orientation is None or f.pixel_spacing is None
    ]
    if flat or context.modality.upper() in PROJECTION_MODALITIES:
        reason = _projection_reason(context.modality)
        return [_single_image(f, context, reason) for f in frames]
    groups = geometry.orientation_groups([f.orientation or () for f in frames])
    if len(groups) > 1:
        reason = (
            f"The series mixes {len(groups)} slice orientations (Image Orientation "
            "(Patient)), e.g. a localizer or a radial set; its images cannot be stacked "
            "into one volume."
        )
        return [_single_image(f, context, reason) for f in frames]
    direction = geometry.direction_cosines(frames[0].orientation or ())
    results: list[VolumeResult] = []
    for stack in _split_stacks(frames, direction[:, 2], [], []):
        results.extend(_build_stack(stack, direction, context))
    return results


def _projection_reason(modality: str) -> str:
    if modality.upper() in PROJECTION_MODALITIES:
        return (
            f"Projection radiograph ({modality}): a single 2D image, not a cross-sectional volume."
        )
    return (
        "No Image Position/Orientation (Patient) or Pixel Spacing: a 2D image (e.g. a "
        "secondary capture), not a slice of a volume."
    )


def _single_image(frame: _Frame, context: _Context, reason: str) -> VolumeResult:
    values = _rescaled(context.pixels.frame(frame), frame, context.keep_stored)
    direction = geometry.direction_cosines(frame.orientation) if frame.orientation else np.eye(3)
    row_spacing, column_spacing = frame.pixel_spacing or (1.0, 1.0)
    origin = frame.position if frame.position is not None else np.zeros(3)
    label = f"image {frame.instance}" if frame.instance is not None else "image"
    if frame.frame_index is not None:
        label = f"{label} frame {frame.frame_index + 1}"
    return VolumeResult(
        voxels=_to_output_dtype(values[np.newaxis], _integral([frame], context.keep_stored)),
        origin=_triple(origin),
        spacing=(column_spacing, row_spacing, frame.thickness or 1.0),
        direction=direction,
        notes=[*context.series_notes, QANote(NOT_A_VOLUME, reason)],
        label=label,
        modality=context.modality,
        series_instance_uid=context.series_uid,
        frame_count=1,
    )


def _triple(values: Sequence[float] | FloatArray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _distances(frames: Sequence[_Frame], normal: FloatArray) -> FloatArray:
    positions = np.array([f.position for f in frames], dtype=np.float64)
    return geometry.project_on_normal(positions, normal)


def _sort_value(value: Hashable) -> tuple[int, str]:
    return (0, f"{value:020.6f}") if isinstance(value, int | float) else (1, repr(value))


def _split_stacks(
    frames: list[_Frame], normal: FloatArray, labels: list[str], notes: list[QANote]
) -> list[_Stack]:
    """Split frames sharing slice positions by their non-spatial keys (recursively)."""
    if not geometry.has_repeated_positions(_distances(frames, normal)):
        return [_Stack(frames, labels, notes)]
    for key in _SPLIT_KEYS:
        values = sorted({f.keys.get(key) for f in frames}, key=_sort_value)
        if len(values) < 2:
            continue
        groups = [[f for f in frames if f.keys.get(key) == value] for value in values]
        if key in _STRICT_KEYS and any(
            geometry.has_repeated_positions(_distances(g, normal)) for g in groups
        ):
            continue
        result = []
        for number, group in enumerate(groups, start=1):
            label = group[0].labels.get(key, f"{_KEY_NAMES[key]} {number}")
            if key in _TIME_KEYS:
                label = f"time {number} of {len(groups)}"
            note = _split_note(key, len(groups), frames, normal)
            result.extend(_split_stacks(group, normal, [*labels, label], [*notes, note]))
        return result
    return _split_by_repeat_order(frames, normal, labels, notes)


def _split_note(key: str, count: int, frames: Sequence[_Frame], normal: FloatArray) -> QANote:
    positions = _unique_positions(_distances(frames, normal))
    if key in _TIME_KEYS:
        return QANote(
            SPLIT_4D,
            f"4D series: {positions} slice positions repeated over {count} time points; split "
            f"into {count} 3D volumes by {_KEY_NAMES[key]}.",
            {"time_points": count, "positions": positions, "by": key},
        )
    return QANote(
        SPLIT_NON_SPATIAL,
        f"Several images per slice position that differ by {_KEY_NAMES[key]}; split into "
        f"{count} volumes.",
        {"volumes": count, "by": key},
    )


def _unique_positions(distances: FloatArray) -> int:
    ordered = np.sort(distances)
    return int(1 + np.count_nonzero(np.diff(ordered) >= geometry.POSITION_TOLERANCE_MM))


def _position_clusters(distances: FloatArray) -> list[int]:
    """Cluster index of each distance (positions closer than the tolerance share one)."""
    order = np.argsort(distances, kind="stable")
    cluster = [0] * len(distances)
    current, previous = 0, None
    for index in order:
        if previous is not None and distances[index] - previous >= geometry.POSITION_TOLERANCE_MM:
            current += 1
        cluster[int(index)] = current
        previous = distances[index]
    return cluster


def _split_by_repeat_order(
    frames: list[_Frame], normal: FloatArray, labels: list[str], notes: list[QANote]
) -> list[_Stack]:
    """Time point k holds the k-th occurrence of each position, in Instance Number order."""
    ordered = sorted(
        frames, key=lambda f: (f.instance if f.instance is not None else 1 << 62, f.order)
    )
    clusters = _position_clusters(_distances(ordered, normal))
    seen: dict[int, int] = {}
    occurrence = []
    for cluster in clusters:
        occurrence.append(seen.get(cluster, 0))
        seen[cluster] = occurrence[-1] + 1
    count = max(occurrence) + 1
    note = QANote(
        SPLIT_4D,
        f"4D series: {len(seen)} slice positions repeated over {count} time points; split into "
        f"{count} 3D volumes by the order of repeats (Instance Number).",
        {"time_points": count, "positions": len(seen), "by": "repeat_order"},
    )
    return [
        _Stack(
            [f for f, k in zip(ordered, occurrence, strict=True) if k == time],
            [*labels, f"time {time + 1} of {count}"],
            [*notes, note],
        )
        for time in range(count)
    ]


def _build_stack(stack: _Stack, direction: FloatArray, context: _Context) -> list[VolumeResult]:
    frames = stack.frames
    shapes = {(f.rows, f.columns, f.pixel_spacing) for f in frames}
    if len(shapes) > 1:
        reason = "Images of this stack differ in matrix size or pixel spacing; not stacked."
        return [_single_image(f, context, reason) for f in frames]
    distances = _distances(frames, direction[:, 2])
    order = np.argsort(distances, kind="stable")
    frames = [frames[int(i)] for i in order]
    distances = distances[order]
    steps = np.diff(distances)
    gaps = geometry.find_gaps(steps, [f.instance for f in frames])
    bounds = [0, *(g + 1 for g in gaps), len(frames)]
    blocks = [frames[start:end] for start, end in itertools.pairwise(bounds)]
    results = []
    for number, block in enumerate(blocks, start=1):
        notes = [*context.series_notes, *stack.notes]
        labels = list(stack.labels)
        if gaps:
            notes.append(_gap_note(gaps, steps, distances, frames, number, len(blocks)))
            labels.append(f"block {number} of {len(blocks)}")
        label = ", ".join(labels) or "volume"
        if len(block) == 1:
            single = _single_image(
                block[0],
                context,
                "Only one slice in this block (the rest of the series is "
                "separated by missing slices)."
                if gaps
                else "Only one slice: not a volume.",
            )
            single.notes = [*notes, *single.notes[len(context.series_notes) :]]
            single.label = label if labels else single.label
            results.append(single)
            continue
        results.append(_assemble(block, direction, notes, label, context))
    return results


def _gap_note(
    gaps: list[int],
    steps: FloatArray,
    distances: FloatArray,
    frames: list[_Frame],
    block: int,
    blocks: int,
) -> QANote:
    median = float(np.median(steps))
    places = []
    for gap in gaps:
        before, after = frames[gap], frames[gap + 1]
        places.append(
            {
                "after_slice": gap + 1,
                "from_mm": round(float(distances[gap]), 3),
                "to_mm": round(float(distances[gap + 1]), 3),
                "step_mm": round(float(steps[gap]), 3),
                "estimated_missing": max(1, round(float(steps[gap]) / median) - 1),
                "instance_before": before.instance,
                "instance_after": after.instance,
            }
        )
    where = "; ".join(
        f"{p['step_mm']:g} mm gap after sorted slice {p['after_slice']} (at {p['from_mm']:g} mm "
        f"along the normal, about {p['estimated_missing']} slices missing)"
        for p in places
    )
    return QANote(
        MISSING_SLICES,
        f"Missing slices: {where}. The median step is {median:g} mm. Not interpolated: the "
        f"series is split at the gap; this is block {block} of {blocks}.",
        {"gaps": places, "median_step_mm": median, "block": block, "blocks": blocks},
    )


def _assemble(
    frames: list[_Frame],
    direction: FloatArray,
    notes: list[QANote],
    label: str,
    context: _Context,
) -> VolumeResult:
    """Stack sorted, gap-free slices; correct tilt and variable spacing by resampling.

    The voxels are allocated once, in the output dtype, and filled one slice at a time: a
    plain stack straight from each decoded frame; a tilted or variably spaced one from the
    stored values of its frames (kept compact, as decoded) through one-slice float buffers.
    """
    first = frames[0]
    row_spacing, column_spacing = first.pixel_spacing or (1.0, 1.0)
    positions = np.array([f.position for f in frames], dtype=np.float64)
    distances = positions @ direction[:, 2]
    distances = distances - distances[0]
    steps = np.diff(distances)
    tilted = geometry.is_tilted(positions, direction, (column_spacing, row_spacing))
    variable = geometry.is_variable_spacing(steps)
    output = _Output(_integral(frames, context.keep_stored))
    origin = positions[0].copy()
    notes = list(notes)
    if not tilted and not variable:
        output.allocate((len(frames), first.rows, first.columns))
        for k, frame in enumerate(frames):
            output.put(k, _slice_values(context.pixels.frame(frame), frame, context, output))
        return VolumeResult(
            voxels=output.voxels,
            origin=_triple(origin),
            spacing=(column_spacing, row_spacing, float(distances[-1] / (len(frames) - 1))),
            direction=direction,
            notes=notes,
            label=label,
            modality=context.modality,
            series_instance_uid=context.series_uid,
            frame_count=len(frames),
        )

    shifts: list[_AxisShift] = []
    if tilted:
        offsets = geometry.in_plane_offsets(positions, direction)
        angle = geometry.tilt_angle_degrees(positions, direction)
        shifts = _shear_plan(offsets, (column_spacing, row_spacing), first)
        first_x = next((s.first for s in shifts if s.axis == 1), 0)
        first_y = next((s.first for s in shifts if s.axis == 0), 0)
        origin = (
            origin
            + first_x * column_spacing * direction[:, 0]
            + first_y * row_spacing * direction[:, 1]
        )
        notes.append(
            QANote(
                GANTRY_TILT_CORRECTED,
                f"Gantry tilt of {angle:.1f} degrees corrected by resampling onto an "
                "orthogonal grid.",
                {"tilt_degrees": angle, "shape_before": [len(frames), first.rows, first.columns]},
            )
        )
    plane = [first.rows, first.columns]
    for shift in shifts:
        plane[shift.axis] = shift.size
    grid = geometry.uniform_grid(distances) if variable else None
    output.allocate((grid.count if grid else len(frames), *plane))
    sources = _Sources(frames, context, shifts, int(output.voxels.nbytes * _SOURCE_BUDGET))
    if grid is not None:
        low, high, weight = _resample_plan(distances, grid)
        for index in range(grid.count):
            values = sources.slice(int(low[index])) * (1 - weight[index])
            values += sources.slice(int(high[index])) * weight[index]
            output.put(index, np.rint(values, out=values) if output.integral else values)
        spacing_z = grid.spacing
        distinct = sorted({round(float(s), 2) for s in steps})
        notes.append(
            QANote(
                VARIABLE_SPACING_RESAMPLED,
                f"Slice spacing varies ({', '.join(f'{s:g}' for s in distinct)} mm); resampled to "
                f"{grid.count} slices at a uniform {spacing_z:.4g} mm (the smallest step, at most "
                "twice the slice count).",
                {
                    "original_steps_mm": [float(s) for s in steps],
                    "distinct_steps_mm": distinct,
                    "spacing_mm": spacing_z,
                    "slices": grid.count,
                },
            )
        )
    else:
        for k in range(len(frames)):
            values = sources.slice(k)
            output.put(k, np.rint(values) if output.integral else values)
        spacing_z = float(distances[-1] / (len(frames) - 1))

    return VolumeResult(
        voxels=output.voxels,
        origin=_triple(origin),
        spacing=(column_spacing, row_spacing, spacing_z),
        direction=direction,
        notes=notes,
        label=label,
        modality=context.modality,
        series_instance_uid=context.series_uid,
        frame_count=len(frames),
    )


class _Output:
    """The voxels of one volume, allocated once and filled slice by slice.

    Non-integral values are float32. Integral values start as int16 and the array becomes
    int32 the first time a slice does not fit: the dtype :func:`_to_output_dtype` would pick
    for the whole stack (int16 when the full range fits), without a float copy of it.
    """

    def __init__(self, integral: bool) -> None:
        self.integral = integral
        self.voxels: NDArray[Any] = np.empty((0, 0, 0), dtype=np.float32)

    def allocate(self, shape: tuple[int, ...]) -> None:
        self.voxels = np.empty(shape, dtype=np.int16 if self.integral else np.float32)

    def put(self, index: int, values: NDArray[Any]) -> None:
        """Store slice ``index``: integers (or integral floats) when integral, else floats."""
        if self.voxels.dtype == np.int16 and values.size:
            info = np.iinfo(np.int16)
            if not (info.min <= values.min() and values.max() <= info.max):
                self.voxels = self.voxels.astype(np.int32)
        self.voxels[index] = values


def _slice_values(
    pixels: NDArray[Any], frame: _Frame, context: _Context, output: _Output
) -> NDArray[Any]:
    """One slice's values for :meth:`_Output.put`: exact integers (int32) for integer pixels
    with an integral rescale, rounded floats for other integral data, floats otherwise."""
    if not output.integral:
        return _rescaled(pixels, frame, context.keep_stored)
    slope, intercept = (1, 0) if context.keep_stored else (int(frame.slope), int(frame.intercept))
    if (
        pixels.dtype.kind in "iu"
        and pixels.dtype.itemsize <= 2
        and abs(slope) <= 2**14
        and abs(intercept) <= 2**30  # 2**16 * 2**14 + 2**30 < 2**31: no int32 overflow
    ):
        values = pixels.astype(np.int32)
        if slope != 1:
            values *= slope
        if intercept:
            values += intercept
        return values
    rescaled = _rescaled(pixels, frame, context.keep_stored)
    return np.rint(rescaled)


@dataclass(frozen=True, slots=True)
class _AxisShift:
    """Slice k moves by ``pixels[k]`` along one in-plane axis (0: y, down a column; 1: x).

    The output axis (``size`` long) holds every shifted slice and stays aligned with the pixel
    lattice of slices whose shift is an integer (the first slice: shift 0); ``first`` is the
    index, in the old lattice, of its first pixel (<= 0).
    """

    axis: int
    pixels: FloatArray
    first: int
    size: int


def _shear_plan(
    offsets_mm: FloatArray, spacing_xy: tuple[float, float], first: _Frame
) -> list[_AxisShift]:
    """The in-plane shifts that undo a shear: slice k moves by its IPP offset (mm) from the
    first slice, along x and then along y."""
    plan = []
    for axis, column, size in ((1, 0, first.columns), (0, 1, first.rows)):
        pixels = offsets_mm[:, column] / spacing_xy[column]
        if np.max(np.abs(pixels)) > 1e-6:
            low = math.floor(float(pixels.min()) + 1e-6)
            high = math.ceil(float(pixels.max()) - 1e-6)
            plan.append(_AxisShift(axis, pixels, low, size + high - low))
    return plan


def _shift_slice(image: FloatArray, k: int, shift: _AxisShift, fill: float) -> FloatArray:
    """Slice ``k`` shifted: linear interpolation between the two neighbouring source pixels;
    positions outside the source get ``fill``."""
    size = image.shape[shift.axis]
    shape = list(image.shape)
    shape[shift.axis] = shift.size
    out = np.full(shape, fill, dtype=np.float64)
    source = np.arange(shift.size, dtype=np.float64) + shift.first - shift.pixels[k]
    valid = (source >= 0) & (source < size)
    low = np.floor(source[valid]).astype(np.intp)
    high = np.minimum(low + 1, size - 1)
    fraction = source[valid] - low
    # low * (1 - fraction) + high * fraction, in place: two slice-sized temporaries, not five.
    if shift.axis == 0:
        before, after = image[low, :], image[high, :]
        before *= (1 - fraction)[:, None]
        after *= fraction[:, None]
        before += after
        out[valid, :] = before
    else:
        before, after = image[:, low], image[:, high]
        before *= (1 - fraction)[None, :]
        after *= fraction[None, :]
        before += after
        out[:, valid] = before
    return out


class _Sources:
    """A stack's frames for resampling, rescaled (float64) and shifted one slice at a time.

    A first pass decodes every frame for the smallest value (the fill of the border widened by
    a shift) and keeps the stored values of the first frames, in their decoded dtype, up to
    ``budget`` bytes; the others are decoded again when needed. The last two results are
    cached (resampling reads neighbouring slices in increasing order).
    """

    def __init__(
        self, frames: list[_Frame], context: _Context, shifts: list[_AxisShift], budget: int
    ) -> None:
        self.frames = frames
        self.pixels = context.pixels
        self.keep_stored = context.keep_stored
        self.shifts = shifts
        self.kept: dict[int, NDArray[Any]] = {}
        used, fill = 0, math.inf
        for k, frame in enumerate(frames):
            pixels = self.pixels.frame(frame)
            fill = min(fill, float(_rescaled(pixels, frame, self.keep_stored).min()))
            if used + pixels.nbytes <= budget:
                self.kept[k] = np.array(pixels, copy=True)
                used += pixels.nbytes
        self.pixels.forget()
        self.fill = fill
        self._cache: dict[int, FloatArray] = {}

    def slice(self, k: int) -> FloatArray:
        """Frame ``k`` rescaled and shifted; do not modify the result."""
        cached = self._cache.get(k)
        if cached is not None:
            return cached
        stored = self.kept.get(k)
        if stored is None:
            stored = self.pixels.frame(self.frames[k])
        image = _rescaled(stored, self.frames[k], self.keep_stored)
        for shift in self.shifts:
            image = _shift_slice(image, k, shift, self.fill)
        if len(self._cache) >= 2:
            self._cache.pop(min(self._cache))
        self._cache[k] = image
        return image


def _resample_plan(
    distances: FloatArray, grid: geometry.UniformGrid
) -> tuple[NDArray[np.intp], NDArray[np.intp], FloatArray]:
    """For each slice of the uniform grid: the two bracketing source slices (low, high) and
    the weight of the high one (linear interpolation along the normal)."""
    targets = distances[0] + np.arange(grid.count) * grid.spacing
    high = np.clip(np.searchsorted(distances, targets - 1e-9, side="left"), 1, len(distances) - 1)
    low = high - 1
    span = distances[high] - distances[low]
    weight = np.clip((targets - distances[low]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    return low, high, weight
