"""Reconstruction and NIfTI writing stream: one decoded image at a time, bounded memory.

The benchmark (``just bench-volumes``) measures the memory of whole processes; these tests pin
the properties it relies on with an instrumented decoder (``pixels.decode``) and
tracemalloc (which sees numpy's buffers): each image is decoded once and dropped before the
next, no dataset keeps its Pixel Data after its decode, the working memory of a build stays
under 2.5x the volume it returns, and writing a NIfTI file never copies the volume.
"""

from __future__ import annotations

import gc
import gzip
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from appliance.volumes import assemble, pixels
from appliance.volumes import reconstruct as rc
from appliance.volumes.nifti import (
    PIECE_BYTES,
    nifti_bytes,
    nifti_stream,
    to_nifti_image,
    write_nifti,
)
from tests.dicom_files import DATA, instance_files

PIXEL_DATA = 0x7FE00010
TILTED = "ct_ge_head_tilt18_varspacing"  # 28 slices -> 56 resampled, tilt-corrected


@dataclass
class DecodeLog:
    """What the instrumented decoder saw."""

    calls: int = 0
    alive: int = 0
    most_alive: int = 0
    datasets: list[Dataset] = field(default_factory=list)

    def died(self) -> None:
        self.alive -= 1


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[DecodeLog]:
    """Counts decodes and how many decoded images are alive at once (weak references).

    A full collection before each decode finds images kept only by reference cycles. The
    objects older than the test are frozen first (``gc.freeze``), so a collection scans only
    what the test made: in the whole suite's heap each one took about 2 s (176 s for one
    test), alone under 0.1 s."""
    log = DecodeLog()
    real: Callable[[Dataset, int | None], Any] = pixels.decode

    def counting(dataset: Dataset, index: int | None) -> Any:
        gc.collect()  # only what is really referenced counts as alive
        image = real(dataset, index)
        log.calls += 1
        log.alive += 1
        log.most_alive = max(log.most_alive, log.alive)
        log.datasets.append(dataset)
        weakref.finalize(image, log.died)
        return image

    monkeypatch.setattr(pixels, "decode", counting)
    gc.collect()
    gc.freeze()
    try:
        yield log
    finally:
        gc.unfreeze()


@pytest.fixture
def traced() -> Iterator[None]:
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _peak_since_reset() -> int:
    return tracemalloc.get_traced_memory()[1]


# ---- decoding one image at a time -----------------------------------------------------------


def _deferred(dataset: Dataset) -> bool:
    """True when the dataset's Pixel Data is not in memory (a deferred value)."""
    return dataset.get_item(PIXEL_DATA, keep_deferred=True).value is None


def test_a_plain_series_decodes_each_file_once_and_drops_its_pixel_data(
    decodes: DecodeLog,
) -> None:
    files = instance_files("mr_siemens_t1_sag_brain_35sl")
    [volume] = rc.build_volumes(files)
    assert volume.voxels.shape[0] == len(files)
    assert decodes.calls == len(files)  # once each, no pass to find the range first
    assert decodes.most_alive <= 2  # the one being decoded and at most the previous one
    # Read with the header only; Pixel Data read for its decode and deferred again after it.
    assert len({id(ds) for ds in decodes.datasets}) == len(files)
    assert all(_deferred(ds) for ds in decodes.datasets)


def test_compressed_pixel_data_is_deferred_and_decoded_one_file_at_a_time(
    decodes: DecodeLog,
) -> None:
    # RLE, JPEG Lossless (two), JPEG-LS (two), JPEG 2000: encapsulated, undefined length.
    files = instance_files("mr_siemens_transfer_syntax_matrix")[3:]
    syntaxes = {
        str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files
    }
    assert not syntaxes & {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
    results = rc.build_volumes(files)
    assert len(results) == len(files)
    assert decodes.calls == len(files)
    assert decodes.most_alive <= 2
    assert all(_deferred(ds) for ds in decodes.datasets)


def test_a_multi_frame_object_is_decoded_frame_by_frame(decodes: DecodeLog) -> None:
    [path] = instance_files("mr_enhanced_multiframe/philips_achieva")
    frames = int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames)
    volumes = rc.build_volumes([path])
    assert sum(v.voxels.shape[0] for v in volumes) == frames
    assert decodes.calls == frames
    assert decodes.most_alive <= 2
    assert _deferred(decodes.datasets[0])  # released when the build ends


def test_a_tilted_resampled_series_decodes_each_file_once_within_bounded_memory(
    decodes: DecodeLog, traced: None
) -> None:
    files = instance_files(TILTED)
    [volume] = rc.build_volumes(files)
    peak = _peak_since_reset()
    assert volume.has_note(rc.GANTRY_TILT_CORRECTED)
    assert volume.has_note(rc.VARIABLE_SPACING_RESAMPLED)
    assert volume.voxels.shape[0] == 2 * len(files)
    assert decodes.calls == len(files)  # the stored values fit the budget: kept, not re-read
    assert decodes.most_alive <= 2
    # Everything allocated while building (headers, stored values, the volume, one-slice
    # float buffers) stays under 2.5x the volume: no whole-volume float copies (the float64
    # stack alone would be 4x an int16 volume).
    assert peak <= 2.5 * volume.voxels.nbytes, f"{peak / volume.voxels.nbytes:.2f}x"


def test_without_kept_stored_values_the_resampled_volume_is_the_same(
    decodes: DecodeLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = instance_files(TILTED)
    [kept] = rc.build_volumes(files)
    first = decodes.calls
    monkeypatch.setattr(assemble, "_SOURCE_BUDGET", 0.0)
    [decoded_twice] = rc.build_volumes(files)
    assert decodes.calls - first == 2 * len(files)  # one pass for the fill value, one to resample
    assert decodes.most_alive <= 2
    assert decoded_twice.voxels.dtype == kept.voxels.dtype
    assert np.array_equal(decoded_twice.voxels, kept.voxels)
    assert decoded_twice.origin == kept.origin


def test_the_int16_output_becomes_int32_when_a_later_slice_needs_it() -> None:
    files = sorted((DATA / "dicomdir_pcir_3patients_prior_current" / "98892001" / "CT5N").iterdir())
    datasets = [pydicom.dcmread(f) for f in files]
    [plain] = rc.build_volumes_from_datasets(datasets)
    assert plain.voxels.dtype == np.int16
    # Raise the intercept of the last slice in the volume's order only: the slices filled
    # before it were int16 and must survive the widening unchanged.
    normal = plain.direction[:, 2]
    last = max(
        datasets, key=lambda ds: float(np.dot([float(v) for v in ds.ImagePositionPatient], normal))
    )
    last.RescaleIntercept = 40000
    [wide] = rc.build_volumes_from_datasets(datasets)
    assert wide.voxels.dtype == np.int32
    assert np.array_equal(wide.voxels[:-1], plain.voxels[:-1])
    assert np.array_equal(wide.voxels[-1], plain.voxels[-1].astype(np.int32) + 40000 + 1024)


# ---- NIfTI writing ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tilted_volume() -> rc.VolumeResult:
    [volume] = rc.build_volumes(instance_files(TILTED))
    return volume


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
def test_streamed_nifti_is_exactly_what_nibabel_writes(
    tilted_volume: rc.VolumeResult, dtype: type[np.generic]
) -> None:
    volume = rc.VolumeResult(
        voxels=tilted_volume.voxels.astype(dtype),
        origin=tilted_volume.origin,
        spacing=tilted_volume.spacing,
        direction=tilted_volume.direction,
        notes=[],
        label="streamed",
    )
    content = nifti_bytes(volume)
    assert gzip.decompress(content) == to_nifti_image(volume).to_bytes()
    with nifti_stream(volume) as stream:
        assert stream.read(1000) + stream.read() == content


def test_writing_a_nifti_file_never_copies_the_volume(
    tilted_volume: rc.VolumeResult, tmp_path: Path, traced: None
) -> None:
    path = tmp_path / "volume.nii.gz"
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    write_nifti(tilted_volume, path)
    extra = _peak_since_reset() - before
    # A few compressed pieces in flight, never the uncompressed file or a copy of the voxels
    # (the volume is 33 MB, eight pieces).
    assert tilted_volume.voxels.nbytes > 8 * PIECE_BYTES
    assert extra < 0.75 * tilted_volume.voxels.nbytes, f"{extra / 2**20:.1f} MB"
    assert path.read_bytes() == nifti_bytes(tilted_volume)
