"""The viewer overlay's texts (pure): missing demographics in words, the window line of the
image shown (a preset by name with its numbers, a drag as "dragged"), stale drags ignored, and
the display aspect of the image plate."""

from __future__ import annotations

from datetime import date

import pytest

from appliance.studies.models import InstanceOut, PatientSummary, SeriesOut, StudyDetail
from ui import format, i18n
from ui.pages.viewer import overlay
from ui.pages.viewer.state import Slice, ViewState, display_aspect, dragged_window


def study(**patient: object) -> StudyDetail:
    fields: dict[str, object] = {
        "id": "p1", "patient_id": "MRN7", "first_name": "Ada", "last_name": "Doe", "sex": "F",
        "birth_date": date(1950, 6, 1), "demographics_conflict": False,
    }
    fields.update(patient)
    return StudyDetail(
        id="s1", study_uid="1.2.3", study_date="20240601", study_time=None,
        accession_number=None, description="CT head", modalities=["CT"], status="stable",
        series_count=1, instance_count=1, created_at="", updated_at="",
        patient=PatientSummary.model_validate(fields),
        series=[SeriesOut(id="se1", study_id="s1", series_uid="1.2.3.4", modality="CT",
                          series_number=1, description="Axial", body_part=None,
                          status="stable", instance_count=1, created_at="")],
    )


def instance(**values: object) -> InstanceOut:
    fields: dict[str, object] = {
        "id": "i1", "series_id": "se1", "sop_instance_uid": "1.2.3.4.5", "sop_class_uid": "1.2",
        "instance_number": 1, "rows": 512, "columns": 512, "frames": 1,
        "transfer_syntax_uid": None, "image_position": None, "image_orientation": None,
        "pixel_spacing": [0.5, 0.5], "slice_thickness": 5.0, "slice_position": None,
        "size": 1, "sha256": "", "storage_state": "local", "received_at": "",
    }
    fields.update(values)
    return InstanceOut.model_validate(fields)


def test_known_demographics() -> None:
    assert overlay.demographics(study()).splitlines() == [
        "Doe, Ada", "MRN MRN7", "F · 74 y · born 1950-06-01"]


def test_missing_demographics_are_said_in_words() -> None:
    text = overlay.demographics(study(first_name=None, last_name=None, sex=None,
                                      birth_date=None, patient_id=""))
    assert text.splitlines() == [
        "Name unknown", "MRN unknown", "sex unknown · age unknown · birth date unknown"]
    assert "- " not in text and " -" not in text


def test_missing_demographics_in_french(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(i18n, "current", lambda: "fr")
    text = overlay.demographics(study(sex=None, birth_date=None))
    assert text.splitlines()[2] == "sexe inconnu · âge inconnu · date de naissance inconnue"


def test_technique_leaves_out_what_is_unknown() -> None:
    view = ViewState(study(), None, series_id="se1")
    assert overlay.technique(view, Slice(instance(), 0)).splitlines() == [
        "Jun 1, 2024", "CT Axial", "512 x 512 px · slice 5 mm"]
    wide = instance(rows=160, columns=1024)  # width x height, as a screen resolution reads
    assert overlay.technique(view, Slice(wide, 0)).splitlines()[2].startswith("1024 x 160 px")
    view.decoder = "gdcm"  # the image needed the fallback decoder: the overlay says so
    assert overlay.technique(view, Slice(instance(), 0)).splitlines()[-1] == "decoded with GDCM"
    view.decoder = None
    bare = instance(rows=None, slice_thickness=None)
    assert overlay.technique(view, Slice(bare, 0)).splitlines() == ["Jun 1, 2024", "CT Axial"]


def shown(source: str | None, preset: str | None,
          window: tuple[float, float] | None) -> ViewState:
    view = ViewState(study(), None)
    view.shown_source, view.shown_preset, view.shown_window = source, preset, window
    return view


def test_the_window_line_names_the_preset_with_its_numbers() -> None:
    assert overlay.window_lines(shown("preset", "soft", (40, 400))) == (
        "Window: Soft tissue", "C 40 / W 400")
    assert overlay.window_lines(shown("preset", "brain", (40, 80))) == (
        "Window: Brain", "C 40 / W 80")


def test_the_window_line_after_a_drag_says_dragged() -> None:
    assert overlay.window_lines(shown("explicit", None, (164.33, 710.71))) == (
        "Window: dragged", "C 164.3 / W 710.7")


def test_a_preset_that_did_not_apply_shows_the_automatic_window() -> None:
    # "Brain" on a radiograph: the file's own window was used, so the overlay says Auto.
    view = shown("window", None, (2048, 4096))
    view.preset = "brain"
    assert overlay.window_lines(view) == ("Window: Auto", "C 2048 / W 4096")
    assert overlay.window_lines(shown("colour", None, None)) == ("", "")
    assert overlay.window_lines(shown(None, None, None)) == ("", "")


def test_a_drag_begun_before_a_preset_is_ignored() -> None:
    assert dragged_window({"center": 10, "width": 50, "gen": 2}, 2) == (10.0, 50.0)
    assert dragged_window({"center": 10, "width": 50, "gen": 1}, 2) is None
    assert dragged_window({"center": 10, "width": 50}, 2) == (10.0, 50.0)
    assert dragged_window({"center": 10, "width": 0, "gen": 2}, 2) is None


def test_display_aspect_uses_the_pixel_spacing() -> None:
    assert display_aspect(Slice(instance(), 0)) == 1.0
    assert display_aspect(Slice(instance(rows=256, columns=512), 0)) == 2.0
    # Rows 1 mm apart, columns 0.5 mm apart: the image is half as wide as its matrix.
    assert display_aspect(Slice(instance(pixel_spacing=[1.0, 0.5]), 0)) == 0.5
    assert display_aspect(Slice(instance(pixel_spacing=[100.0, 0.1]), 0)) == 1.0  # implausible
    assert display_aspect(Slice(instance(pixel_spacing=None, rows=None), 0)) == 1.0  # no matrix


def test_worklist_patient_line_says_unknown_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    known = study().patient
    assert format.patient_facts(known, "20240601") == "MRN MRN7 · 74 y · female"
    bare = known.model_copy(update={"patient_id": "", "sex": None, "birth_date": None})
    assert format.patient_facts(bare, "20240601") == "MRN unknown · age unknown · sex unknown"
    odd = known.model_copy(update={"sex": "X"})  # not a DICOM (0010,0040) value
    assert format.patient_facts(odd, "20240601") == "MRN MRN7 · 74 y · sex unknown"
    monkeypatch.setattr(i18n, "current", lambda: "fr")
    assert format.patient_facts(bare, None) == "IPP inconnu · âge inconnu · sexe inconnu"
