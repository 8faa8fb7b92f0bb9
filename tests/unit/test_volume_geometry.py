"""Volume reconstruction on the hard cases of tests/data: tilt, spacing, 4D, enhanced, gaps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest

from appliance.volumes import geometry
from appliance.volumes import reconstruct as rc
from appliance.volumes.nifti import LPS_TO_RAS, nifti_bytes, read_nifti, to_nifti_image, write_nifti
from tests.dicom_files import DATA, instance_files


def _positions(files: list[Path]) -> np.ndarray:
    return np.array(
        [
            [float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient]
            for f in files
        ]
    )


@pytest.fixture(scope="module")
def tilted_ct() -> list[rc.VolumeResult]:
    return rc.build_volumes(instance_files("ct_ge_head_tilt18_varspacing"))


# ---- geometry functions ---------------------------------------------------------------------


def test_normal_is_row_cross_column_and_affine_maps_indices_to_lps() -> None:
    # Sagittal: rows run anterior->posterior (+y), columns head->feet (-z); normal = -x.
    direction = geometry.direction_cosines([0, 1, 0, 0, 0, -1])
    assert np.allclose(direction[:, 2], [-1, 0, 0])
    affine = geometry.affine_lps((10.0, 20.0, 30.0), (0.5, 0.75, 2.0), direction)
    assert np.allclose(affine @ [2, 4, 3, 1], [10 - 6.0, 20 + 1.0, 30 - 3.0, 1])
    assert np.isclose(np.linalg.det(direction), 1.0)


def test_gaps_are_lone_jumps_not_changes_of_spacing() -> None:
    assert geometry.find_gaps(np.array([2.0, 2.0, 6.0, 2.0, 2.0])) == [2]
    # 4 mm then 7 mm, with consecutive instance numbers: a change of spacing, not a gap.
    steps = np.array([4.0] * 5 + [1.08] + [7.0] * 5)
    assert geometry.find_gaps(steps, list(range(1, 13))) == []
    # The same steps with a jump in instance number at the first 7 mm step: a gap.
    numbers: list[int | None] = [*range(1, 8), *range(20, 25)]
    assert geometry.find_gaps(steps, numbers) == [6]


def test_uniform_grid_uses_the_smallest_step_capped_at_twice_the_slices() -> None:
    grid = geometry.uniform_grid(np.array([0.0, 3.0, 6.0, 12.0, 22.0]))
    assert grid.count == math.ceil(22 / 3) + 1 and grid.spacing == pytest.approx(22 / 8)
    capped = geometry.uniform_grid(np.array([0.0, 0.5, 50.0, 100.0]))
    assert capped.count == 8 and capped.spacing == pytest.approx(100 / 7)


# ---- gantry tilt and variable spacing -------------------------------------------------------


def test_gantry_tilt_is_detected_with_its_angle_and_corrected(
    tilted_ct: list[rc.VolumeResult],
) -> None:
    files = instance_files("ct_ge_head_tilt18_varspacing")
    tag_tilt = float(pydicom.dcmread(files[0], stop_before_pixels=True).GantryDetectorTilt)
    [volume] = tilted_ct
    note = volume.note(rc.GANTRY_TILT_CORRECTED)
    assert note is not None and volume.is_volume
    # The angle comes from the positions; the scanner's own Gantry/Detector Tilt agrees.
    assert note.details["tilt_degrees"] == pytest.approx(tag_tilt, abs=0.05)
    assert f"Gantry tilt of {tag_tilt:.1f} degrees corrected" in note.text
    # Sheared slices need a taller grid: every row of every slice is kept.
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    positions = _positions(files)
    direction = geometry.direction_cosines(first.ImageOrientationPatient)
    shift_rows = np.ptp(geometry.in_plane_offsets(positions, direction)[:, 1]) / volume.spacing[1]
    assert volume.voxels.shape[1] == first.Rows + math.ceil(shift_rows)
    # The result is orthogonal: its slice axis is the normal of the original image plane.
    assert np.allclose(volume.direction[:, 2], direction[:, 2])
    assert np.allclose(volume.direction.T @ volume.direction, np.eye(3))


def test_variable_spacing_is_resampled_and_the_original_steps_noted(
    tilted_ct: list[rc.VolumeResult],
) -> None:
    files = instance_files("ct_ge_head_tilt18_varspacing")
    [volume] = tilted_ct
    direction = geometry.direction_cosines(
        pydicom.dcmread(files[0], stop_before_pixels=True).ImageOrientationPatient
    )
    distances = np.sort(_positions(files) @ direction[:, 2])
    steps = np.diff(distances)
    note = volume.note(rc.VARIABLE_SPACING_RESAMPLED)
    assert note is not None
    assert note.details["original_steps_mm"] == pytest.approx(steps.tolist())
    assert {4.0, 7.0} <= set(note.details["distinct_steps_mm"])  # 4 mm then 7 mm slabs
    expected = min(math.ceil((distances[-1] - distances[0]) / steps.min()) + 1, 2 * len(files))
    assert volume.voxels.shape[0] == expected
    assert volume.spacing[2] == pytest.approx((distances[-1] - distances[0]) / (expected - 1))


def test_ct_values_are_hounsfield_units_in_int16(tilted_ct: list[rc.VolumeResult]) -> None:
    [volume] = tilted_ct
    assert volume.voxels.dtype == np.int16
    values = volume.voxels[volume.voxels > -1100]  # -1500 is the scanner's padding
    # Air about -1000 HU, water/brain 0..80 HU, bone up to ~2000 HU.
    assert -1050 < np.percentile(values, 2) < -950
    assert 0 < np.median(values[(values > -200) & (values < 200)]) < 80
    assert values.max() < 3100


def test_rescale_is_applied_and_the_dtype_holds_the_range() -> None:
    files = sorted((DATA / "dicomdir_pcir_3patients_prior_current" / "98892001" / "CT5N").iterdir())
    datasets = [pydicom.dcmread(f) for f in files]
    [volume] = rc.build_volumes_from_datasets(datasets)
    assert int(datasets[0].RescaleIntercept) == -1024 and volume.voxels.dtype == np.int16
    stored = {float(ds.ImagePositionPatient[2]): ds.pixel_array for ds in datasets}
    z_order = sorted(stored, key=lambda z: z * volume.direction[2, 2])
    assert np.array_equal(volume.voxels, np.stack([stored[z] - 1024 for z in z_order]))
    for ds in datasets:  # a range beyond int16
        ds.RescaleIntercept = 40000
    [wide] = rc.build_volumes_from_datasets(datasets)
    assert wide.voxels.dtype == np.int32 and int(wide.voxels.max()) > 32767
    for ds in datasets:  # a fractional slope
        ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1024
    [fractional] = rc.build_volumes_from_datasets(datasets)
    assert fractional.voxels.dtype == np.float32
    assert np.allclose(fractional.voxels, (volume.voxels + 1024) * 0.5 - 1024)


# ---- 4D and enhanced multi-frame ------------------------------------------------------------


@pytest.mark.parametrize("series", ["mr_0004", "mr_0005"])  # interleaved, sequential
def test_4d_fmri_splits_into_one_volume_per_time_point(series: str) -> None:
    files = sorted((DATA / "mr_ge_fmri_2series_4d" / series).glob("*.dcm"))
    distances = _positions(files)[:, 2]
    positions = len(np.unique(np.round(distances, 2)))
    time_points = len(files) // positions
    assert (positions, time_points) == (15, 10)  # the set's README: 15 positions x 10
    volumes = rc.build_volumes(files)
    assert len(volumes) == time_points
    assert [v.label for v in volumes] == [f"time {t} of {time_points}" for t in range(1, 11)]
    for volume in volumes:
        assert volume.voxels.shape == (positions, 64, 64) and volume.is_volume
        note = volume.note(rc.SPLIT_4D)
        assert note is not None and note.details["time_points"] == time_points
    # Time point 1 holds the first file of each position, in Instance Number order.
    first = pydicom.dcmread(files[0])
    assert np.array_equal(volumes[0].voxels[0], first.pixel_array)


def test_enhanced_multiframe_splits_magnitude_and_field_map() -> None:
    path = DATA / "mr_enhanced_multiframe" / "philips_achieva" / "IM_0027_fMAP.dcm"
    volumes = {v.label: v for v in rc.build_volumes([path])}
    assert set(volumes) == {"magnitude", "field map"}
    for volume in volumes.values():
        assert volume.voxels.shape == (32, 64, 64) and volume.is_volume
        assert volume.has_note(rc.SPLIT_NON_SPATIAL)
        assert volume.spacing == pytest.approx((4.0, 4.0, 4.0))
    # Per-frame rescale: the field map is in Hz around 0, the magnitude is not negative.
    field_map = volumes["field map"].voxels
    assert field_map.dtype == np.float32 and -500 <= field_map.min() < 0 < field_map.max() <= 500
    assert volumes["magnitude"].voxels.min() >= 0


def test_enhanced_multiframe_across_files_splits_by_temporal_position() -> None:
    files = sorted((DATA / "mr_enhanced_multiframe" / "siemens_xa10").glob("*.dcm"))
    volumes = rc.build_volumes(files)
    assert [v.label for v in volumes] == [f"time {t} of {len(files)}" for t in (1, 2, 3, 4)]
    for volume in volumes:
        assert volume.voxels.shape == (6, 64, 64)
        assert volume.spacing[2] == pytest.approx(2.4)
        note = volume.note(rc.SPLIT_4D)
        assert note is not None and note.details["by"] == "temporal"


def test_palette_perfusion_map_keeps_stored_values() -> None:
    path = DATA / "ct_enhanced_multiframe_nema_ct0012" / "eCT_Supplemental.dcm"
    [volume] = rc.build_volumes([path])
    dataset = pydicom.dcmread(path)
    assert volume.has_note(rc.STORED_VALUES_NOT_HU)
    assert "RCBF" in (volume.note(rc.STORED_VALUES_NOT_HU) or rc.QANote("", "")).text
    # Frames sorted by position: In-Stack Position 1 first; values are the stored ones.
    assert sorted(np.unique(volume.voxels))[0] == dataset.pixel_array.min() == 0
    frames = dataset.pixel_array
    assert {frames[0].tobytes(), frames[1].tobytes()} == {
        np.ascontiguousarray(volume.voxels[k]).astype(frames.dtype).tobytes() for k in (0, 1)
    }


# ---- missing slices, projections, mixed orientations ----------------------------------------


def test_missing_slices_split_the_series_and_are_never_interpolated() -> None:
    folder = DATA / "dicomdir_pcir_3patients_prior_current" / "77654033" / "CT2"
    files = sorted(folder.iterdir())
    volumes = rc.build_volumes(files)
    assert [v.voxels.shape[0] for v in volumes] == [1, 3]
    distances = np.sort(_positions(files)[:, 2])
    gap = float(np.max(np.diff(distances)))
    for volume in volumes:
        note = volume.note(rc.MISSING_SLICES)
        assert note is not None
        assert note.details["gaps"][0]["step_mm"] == pytest.approx(gap, abs=1e-3)
        extent = (volume.voxels.shape[0] - 1) * volume.spacing[2]
        assert extent < gap  # no volume spans the gap
    assert not volumes[0].is_volume  # a lone slice before the gap


def test_dropping_a_middle_slice_makes_two_blocks_of_original_slices() -> None:
    files = instance_files("mr_siemens_t1_sag_brain_35sl")
    [whole] = rc.build_volumes(files)
    kept = files[:17] + files[18:]
    blocks = rc.build_volumes(kept)
    assert [b.voxels.shape[0] for b in blocks] == [17, 17]
    assert all(b.has_note(rc.MISSING_SLICES) for b in blocks)
    # The slices are the original ones, untouched: nothing was interpolated into the hole.
    remaining = np.concatenate([b.voxels for b in blocks])
    order = np.argsort(_positions(files) @ whole.direction[:, 2])
    missing = int(np.where(order == 17)[0][0])
    assert np.array_equal(remaining, np.delete(whole.voxels, missing, axis=0))


def test_a_chest_radiograph_is_not_a_volume() -> None:
    [image] = rc.build_volumes(instance_files("xr_chest_cr_dx"))
    note = image.note(rc.NOT_A_VOLUME)
    assert note is not None and "Projection radiograph (DX)" in note.text
    assert image.voxels.shape == (1, 1024, 1024) and not image.is_volume


def test_mixed_orientations_are_not_a_volume() -> None:
    sagittal = instance_files("mr_siemens_t1_sag_brain_35sl")[:5]
    axial = sorted((DATA / "mr_ge_fmri_2series_4d" / "mr_0004").glob("*.dcm"))[:5]
    results = rc.build_volumes(sagittal + axial)
    assert len(results) == 10 and all(not r.is_volume for r in results)
    note = results[0].note(rc.NOT_A_VOLUME)
    assert note is not None and "mixes 2 slice orientations" in note.text
    assert results[0].has_note(rc.MULTIPLE_SERIES)


# ---- compressed data ------------------------------------------------------------------------


def test_every_transfer_syntax_gives_the_same_voxels() -> None:
    files = instance_files("mr_siemens_transfer_syntax_matrix")
    syntaxes = {
        pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID for f in files
    }
    # Explicit LE, implicit LE, explicit BE, RLE, JPEG Lossless (2 files), JPEG-LS (2), J2K.
    assert len(files) == 9 and len(syntaxes) == 7
    results = [rc.build_volumes([f]) for f in files]
    reference = results[0][0]
    assert reference.has_note(rc.MOSAIC_UNPACKED) and reference.voxels.shape == (35, 64, 64)
    for [volume] in results[1:]:
        assert np.array_equal(volume.voxels, reference.voxels)
        assert np.allclose(volume.affine, reference.affine)


def test_fragmented_jpeg_lossless_series_reconstructs() -> None:
    files = instance_files("mr_siemens_xa30_t1_jpeglossless_fragmented")
    [volume] = rc.build_volumes(files)
    assert volume.voxels.shape == (96, 128, 128) and volume.spacing == pytest.approx((2, 2, 2))
    assert volume.notes == []


def test_undecodable_pixels_raise_a_clear_error() -> None:
    with pytest.raises(rc.VolumeError, match="pixel data cannot be decoded"):
        rc.build_volumes([DATA / "malformed" / "MR_truncated.dcm"])


# ---- NIfTI ----------------------------------------------------------------------------------


def test_nifti_round_trip_converts_lps_to_ras(tmp_path: Path) -> None:
    [volume] = rc.build_volumes(instance_files("mr_siemens_t1_sag_brain_35sl"))
    image = to_nifti_image(volume)
    assert np.allclose(image.affine, LPS_TO_RAS @ volume.affine)
    assert image.shape == volume.voxels.shape[::-1]
    # The first voxel's centre is the first slice's Image Position, with x and y negated.
    assert np.allclose(image.affine[:3, 3], np.array(volume.origin) * [-1, -1, 1])
    content = nifti_bytes(volume)
    assert content == nifti_bytes(volume)  # deterministic
    for source in (content, write_nifti(volume, tmp_path / "t1.nii.gz")):
        loaded = read_nifti(source)
        assert np.array_equal(loaded.voxels, volume.voxels)
        assert loaded.voxels.dtype == volume.voxels.dtype
        assert np.allclose(loaded.affine_lps, volume.affine, atol=1e-4)
