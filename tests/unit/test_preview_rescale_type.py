"""CT window presets with a misspelled Rescale Type (issue 16): a real file said
"Houndsfield Unit" and its presets were silently ignored. Spellings of Hounsfield units are read
as HU, and the response says that it assumed so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.audit.models import Actor
from appliance.dicom.preview import WINDOW_PRESETS, render
from tests.dicom_files import instance_files

CT_SLICE = instance_files("ct_ge_head_tilt18_varspacing")[10]


def _with_rescale_type(tmp_path: Path, value: str) -> Path:
    ds = pydicom.dcmread(CT_SLICE)
    ds.RescaleType = value
    path = tmp_path / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("value", ["Houndsfield Unit", "HOUNSFIELD UNITS", "Hounsfield", "H.U."])
def test_spellings_of_hounsfield_units_get_the_presets_and_a_note(
    tmp_path: Path, value: str
) -> None:
    image = render(_with_rescale_type(tmp_path, value), preset="brain")
    assert image.source == "preset" and image.window == WINDOW_PRESETS["brain"]
    assert image.assumption and "read as HU" in image.assumption


@pytest.mark.parametrize("value", ["US", "MGML", "PCT"])
def test_other_rescale_types_get_no_presets(tmp_path: Path, value: str) -> None:
    image = render(_with_rescale_type(tmp_path, value), preset="brain")
    assert image.preset is None and image.assumption is None


def test_standard_hu_has_no_note(tmp_path: Path) -> None:
    image = render(_with_rescale_type(tmp_path, "HU"), preset="brain")
    assert image.source == "preset" and image.assumption is None


def test_the_preview_response_states_the_assumption(
    app: FastAPI,
    client: TestClient,
    as_role: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    data = _with_rescale_type(tmp_path, "Houndsfield Unit").read_bytes()
    result = app.state.ctx.ingestor.ingest(data, source="usb", actor=Actor.system("test"))
    response = client.get(
        f"/api/instances/{result.instance_id}/preview.png?preset=brain",
        headers=as_role("viewer"),
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Window-Preset"] == "brain"
    assert response.headers["X-Window-Assumption"] == "RescaleType 'Houndsfield Unit' read as HU"
