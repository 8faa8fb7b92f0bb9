"""Diffusion volumes of an enhanced MR (issue 16): Canon enhanced DTI volumes came out in another
order than the acquisition and all labelled just "b=1500". Volumes split by the MR Diffusion
Sequence (PS3.3 C.8.13.5.9) follow the order in which their frames were acquired (as stored)
and are labelled with the b-value and the gradient direction.

The data: a real enhanced MR (Philips Achieva, 32 positions x 2 frame types) made a two-
direction diffusion set with pydicom: every frame the same frame type and echo time, the
first-stored frames given b=1000 along x, the others b=1000 along y (sorting the keys would put
y first)."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from appliance.volumes import reconstruct as rc
from tests.dicom_files import DATA

FMAP = DATA / "mr_enhanced_multiframe" / "philips_achieva" / "IM_0027_fMAP.dcm"
X, Y = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)


def _diffusion_item(b_value: float, direction: tuple[float, float, float]) -> Dataset:
    gradient = Dataset()
    gradient.DiffusionGradientOrientation = list(direction)
    item = Dataset()
    item.DiffusionBValue = b_value
    item.DiffusionDirectionality = "DIRECTIONAL"
    item.DiffusionGradientDirectionSequence = Sequence([gradient])
    return item


def _two_direction_dti(tmp_path: Path) -> tuple[Path, list[tuple[float, float, float]]]:
    ds = pydicom.dcmread(FMAP)
    frames = ds.PerFrameFunctionalGroupsSequence
    first_type = list(frames[0].MRImageFrameTypeSequence[0].FrameType)
    seen: dict[str, tuple[float, float, float]] = {}
    for per_frame in frames:
        frame_type = per_frame.MRImageFrameTypeSequence[0]
        kind = str(frame_type.FrameType[3]) + str(frame_type.get("ComplexImageComponent", ""))
        direction = seen.setdefault(kind, X if not seen else Y)
        frame_type.FrameType = first_type
        frame_type.ComplexImageComponent = "MAGNITUDE"
        if "MREchoSequence" in per_frame:  # one echo time for all, as in a DTI
            per_frame.MREchoSequence[0].EffectiveEchoTime = 80.0
        per_frame.MRDiffusionSequence = Sequence([_diffusion_item(1000.0, direction)])
    path = tmp_path / "dti.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, list(seen.values())


def test_diffusion_volumes_follow_the_acquisition_and_name_b_value_and_direction(
    tmp_path: Path,
) -> None:
    path, acquired = _two_direction_dti(tmp_path)
    assert acquired == [X, Y]
    volumes = rc.build_volumes([path])
    assert [v.label for v in volumes] == [
        "b=1000, direction (1, 0, 0)",
        "b=1000, direction (0, 1, 0)",
    ]


def test_classic_diffusion_images_split_by_b_value_and_direction(tmp_path: Path) -> None:
    """Classic MR images (one file per slice) of a two-direction diffusion run at one b-value
    carry Diffusion Gradient Orientation (0018,9089) beside Diffusion b-value (0018,9087) at the
    top level: the same 35 positions twice, x first. Two volumes, named by direction, in the
    acquired order; not one volume with every position twice."""
    sources = sorted((DATA / "mr_siemens_t1_sag_brain_35sl").glob("*.dcm"))
    assert len(sources) == 35
    paths: list[Path] = []
    number = 0
    for direction in (X, Y):
        for source in sources:
            ds = pydicom.dcmread(source)
            number += 1
            ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(number)])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = number
            ds.DiffusionBValue = 1000.0
            ds.DiffusionGradientOrientation = list(direction)
            path = tmp_path / f"{number:03d}.dcm"
            ds.save_as(path)
            paths.append(path)
    volumes = rc.build_volumes(paths)
    assert [v.label for v in volumes] == [
        "b=1000, direction (1, 0, 0)",
        "b=1000, direction (0, 1, 0)",
    ]
    assert [v.voxels.shape[0] for v in volumes] == [35, 35]  # each position once per volume
