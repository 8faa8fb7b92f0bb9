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

Where each step lives: step 1 in ``frames/`` (classic, enhanced, mosaic), steps 3 to 5 in
``stacking``, the volume itself with steps 6 and 7 in ``assemble`` and ``resample``, values in
``rescale``, decoding in ``pixels``, the returned types and note codes in ``results``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from appliance.volumes import geometry
from appliance.volumes.assemble import BuildContext, single_image
from appliance.volumes.frames import Frame, frames_of
from appliance.volumes.frames.base import series_key
from appliance.volumes.pixels import DEFER_BYTES, PixelReader, check_pixels
from appliance.volumes.rescale import keeps_stored_values, value_notes
from appliance.volumes.results import (
    GANTRY_TILT_CORRECTED,
    MISSING_SLICES,
    MONOCHROME1,
    MOSAIC_UNPACKED,
    MULTIPLE_SERIES,
    NOT_A_VOLUME,
    PROJECTION_MODALITIES,
    RESCALE_NOT_HU,
    SPLIT_4D,
    SPLIT_NON_SPATIAL,
    STORED_VALUES_NOT_HU,
    VARIABLE_SPACING_RESAMPLED,
    QANote,
    VolumeError,
    VolumeResult,
)
from appliance.volumes.stacking import build_stack, split_stacks

__all__ = [
    "GANTRY_TILT_CORRECTED",
    "MISSING_SLICES",
    "MONOCHROME1",
    "MOSAIC_UNPACKED",
    "MULTIPLE_SERIES",
    "NOT_A_VOLUME",
    "PROJECTION_MODALITIES",
    "RESCALE_NOT_HU",
    "SPLIT_4D",
    "SPLIT_NON_SPATIAL",
    "STORED_VALUES_NOT_HU",
    "VARIABLE_SPACING_RESAMPLED",
    "QANote",
    "VolumeError",
    "VolumeResult",
    "build_volumes",
    "build_volumes_from_datasets",
]


def build_volumes(files: Sequence[Path]) -> list[VolumeResult]:
    """Read the DICOM files of one series and reconstruct its volumes.

    Only the headers are read: pydicom defers every value longer than 16 KiB, Pixel Data
    included (encapsulated too), to its first access, and each image is read and decoded when
    its slot in the output is filled (see :class:`PixelReader`).
    """
    datasets = []
    for path in files:
        try:
            dataset = pydicom.dcmread(path, defer_size=DEFER_BYTES)
        except (InvalidDicomError, OSError) as exc:
            raise VolumeError(f"{path.name}: not a readable DICOM file ({exc})") from exc
        dataset.filename = str(path)
        datasets.append(dataset)
    for dataset in datasets:
        check_pixels(dataset)
    return _build(datasets, PixelReader(release=True))


def build_volumes_from_datasets(datasets: Sequence[Dataset]) -> list[VolumeResult]:
    """Reconstruct the volumes of one series from already-read datasets (with pixel data)."""
    for dataset in datasets:
        check_pixels(dataset)
    return _build(datasets, PixelReader(release=False))


def _build(datasets: Sequence[Dataset], pixels: PixelReader) -> list[VolumeResult]:
    if not datasets:
        raise VolumeError("no images given")
    frames: list[Frame] = []
    series_notes: list[QANote] = []
    for file_order, dataset in enumerate(datasets):
        frames.extend(frames_of(dataset, file_order, series_notes))
    series_notes.extend(value_notes(datasets))
    series = {series_key(ds) for ds in datasets}
    if len(series) > 1:
        series_notes.append(
            QANote(
                MULTIPLE_SERIES,
                f"The input mixes {len(series)} series (Series Instance UID / Series Number).",
                {"series": len(series)},
            )
        )
    first = datasets[0]
    context = BuildContext(
        pixels=pixels,
        keep_stored=any(keeps_stored_values(ds) for ds in datasets),
        modality=str(first.get("Modality", "")),
        series_uid=str(first.get("SeriesInstanceUID", "")),
        series_notes=series_notes,
    )
    try:
        return _reconstruct(frames, context)
    finally:
        pixels.close()


# ---- reconstruction -------------------------------------------------------------------------


def _reconstruct(frames: list[Frame], context: BuildContext) -> list[VolumeResult]:
    flat = [
        f for f in frames if f.position is None or f.orientation is None or f.pixel_spacing is None
    ]
    if flat or context.modality.upper() in PROJECTION_MODALITIES:
        reason = _projection_reason(context.modality)
        return [single_image(f, context, reason) for f in frames]
    groups = geometry.orientation_groups([f.orientation or () for f in frames])
    if len(groups) > 1:
        reason = (
            f"The series mixes {len(groups)} slice orientations (Image Orientation "
            "(Patient)), e.g. a localizer or a radial set; its images cannot be stacked "
            "into one volume."
        )
        return [single_image(f, context, reason) for f in frames]
    direction = geometry.direction_cosines(frames[0].orientation or ())
    results: list[VolumeResult] = []
    for stack in split_stacks(frames, direction[:, 2], [], []):
        results.extend(build_stack(stack, direction, context))
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
