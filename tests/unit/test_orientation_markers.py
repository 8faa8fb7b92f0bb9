"""The viewer's orientation letters from Image Orientation (Patient) (0020,0037) and Patient
Orientation (0020,0020), in DICOM's patient coordinates (PS3.3 C.7.6.2.1.1: +x Left,
+y Posterior, +z Head); and that a rendered preview carries them from the file it read."""

from __future__ import annotations

import math
from pathlib import Path

import pydicom
import pytest

from appliance.dicom import orientation, preview
from appliance.dicom.orientation import Markers

DATA = Path(__file__).resolve().parents[1] / "data"


def test_axial_rows_go_left_columns_go_posterior() -> None:
    # The usual transverse slice seen from the feet: patient's right on the screen's left.
    assert orientation.from_image_orientation([1, 0, 0, 0, 1, 0]) == Markers(
        left="R", right="L", top="A", bottom="P")


def test_coronal_and_sagittal() -> None:
    assert orientation.from_image_orientation([1, 0, 0, 0, 0, -1]) == Markers(
        left="R", right="L", top="H", bottom="F")
    assert orientation.from_image_orientation([0, 1, 0, 0, 0, -1]) == Markers(
        left="A", right="P", top="H", bottom="F")


def test_oblique_directions_get_two_letters_largest_first() -> None:
    angle = math.radians(30)
    row = [math.cos(angle), math.sin(angle), 0]  # mostly left, somewhat posterior
    column = [-math.sin(angle), math.cos(angle), 0]
    assert orientation.from_image_orientation(row + column) == Markers(
        left="RA", right="LP", top="AL", bottom="PR")
    # A gantry tilt of 18.5 degrees (tests/data/ct_ge_head_tilt18_varspacing).
    tilted = orientation.from_image_orientation([1, 0, 0, 0, 0.9483237, -0.3173047])
    assert tilted == Markers(left="R", right="L", top="AH", bottom="PF")


def test_three_letters_and_rounding_noise() -> None:
    assert orientation.direction_letters([0.5, -0.7, 0.5099]) == "AHL"
    # Rounding noise and tilts under ~6 degrees add no letter.
    assert orientation.direction_letters([0.99999, 0.00001, -0.05]) == "L"
    assert orientation.direction_letters([0, 0, 0]) == ""


def test_missing_or_unusable_orientation_gives_no_markers() -> None:
    assert orientation.from_image_orientation(None) is None
    assert orientation.from_image_orientation([]) is None
    assert orientation.from_image_orientation([1, 0, 0, 0, 1]) is None  # five values
    assert orientation.from_image_orientation([1, 0, 0, 1, 0, 0]) is None  # parallel
    assert orientation.from_image_orientation([0, 0, 0, 0, 1, 0]) is None  # zero row
    assert orientation.from_image_orientation(["x", 0, 0, 0, 1, 0]) is None
    assert orientation.from_image_orientation([math.nan, 0, 0, 0, 1, 0]) is None
    assert orientation.markers(None, None) is None


def test_patient_orientation_of_a_radiograph() -> None:
    # A PA chest: rows run to the patient's left, columns to the feet (PS3.3 C.7.6.1.1.1).
    assert orientation.from_patient_orientation(["L", "F"]) == Markers(
        left="R", right="L", top="H", bottom="F")
    assert orientation.from_patient_orientation(["A", "FR"]) == Markers(
        left="P", right="A", top="HL", bottom="FR")
    for bad in (None, "L\\F", ["L"], ["L", "R"], ["LR", "F"], ["CR", "D"], ["", "F"],
                ["L", "F", "A"]):
        assert orientation.from_patient_orientation(bad) is None, bad


def test_image_orientation_wins_over_patient_orientation() -> None:
    assert orientation.markers([0, 1, 0, 0, 0, -1], ["L", "F"]) == Markers(
        left="A", right="P", top="H", bottom="F")
    assert orientation.markers(None, ["L", "F"]) == Markers(
        left="R", right="L", top="H", bottom="F")


def test_a_rendered_ct_slice_carries_its_markers() -> None:
    path = sorted((DATA / "ct_ge_head_tilt18_varspacing").glob("*.dcm"))[0]
    rendered = preview.render(path)
    assert rendered.markers == Markers(left="R", right="L", top="AH", bottom="PF")


@pytest.mark.parametrize("value", [["L", "F"], None])
def test_a_radiograph_uses_patient_orientation_if_it_states_one(
    tmp_path: Path, value: list[str] | None
) -> None:
    ds = pydicom.dcmread(DATA / "xr_chest_cr_dx" / "NIH_ChestXray_DX_SC.dcm")
    assert "ImageOrientationPatient" not in ds
    if value is None:
        ds.pop("PatientOrientation", None)
    else:
        ds.PatientOrientation = value
    path = tmp_path / "xr.dcm"
    ds.save_as(path)
    rendered = preview.render(path)
    expected = Markers(left="R", right="L", top="H", bottom="F") if value else None
    assert rendered.markers == expected


def test_an_enhanced_ct_takes_the_plane_orientation_functional_group() -> None:
    path = DATA / "ct_enhanced_multiframe_nema_ct0012" / "eCT_Supplemental.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert "ImageOrientationPatient" not in ds
    # Its shared group says rows run to the patient's right (-x): the letters follow.
    assert orientation.frame_markers(ds, 0) == Markers(left="L", right="R", top="A", bottom="P")
