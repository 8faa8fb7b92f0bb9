"""Chest radiograph (CR/DX) analyses through the real API and the real ingest path, with the
recording OpenAI-protocol server as the engine.

Inputs: the real NIH chest radiograph of ``tests/data/xr_chest_cr_dx`` (DX, 1024 x 1024, 8 bit,
no spacing) as it is, and radiographs derived from it (cropped to 1024 x 701 so the square
padding is not trivial, MONOCHROME1, Imager Pixel Spacing, a lateral view beside the frontal
one) written as CR Image Storage files. What is checked: the model gets the one frontal image
as a JPEG data URL (padded to a square, 896 px), the instruction first, the question last and
no ``SLICE n`` label; the stored findings are hedged; boxes are mapped back through the padding
to pixels of the original image (expected values computed by hand below) and to mm; findings
link to the instance; the model call is audited; a comparison finds the prior radiograph.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from ai.imaging import MODEL_SIDE, prepare_radiograph
from ai.parsing import parse_answer
from ai.safety import DISCLAIMER, apply_safety
from appliance.audit.models import Actor
from appliance.config import Settings
from tests.ai_server import CXR, AIServer, Scripted, chat_completion, engine_settings
from tests.reporting import settle

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
ACTOR = Actor.system("test")

# The derived radiograph: rows 1024, columns 701 -> a 1024 px square, pad_top 0,
# pad_left (1024 - 701) // 2 = 161 (the odd pixel goes to the right).
ROWS, COLS, PAD_LEFT = 1024, 701, 161
CROP_LEFT = 160  # columns 160..860 of the original
SPACING = (0.15, 0.10)  # Imager Pixel Spacing: row, column (mm)

PRIMARY_ANSWER = (
    "<unused94>thought\nA frontal chest radiograph. There is an opacity in the right upper "
    "zone.<unused95>"
    "```json\n"
    '{"findings": [{"description": "This is definitely a pneumonia in the right upper lobe.", '
    '"location": "right upper lobe", "impression": "This confirms lobar pneumonia.", '
    '"confidence": 0.85, "measurements": [{"name": "opacity", "value": 42, "unit": "mm"}], '
    '"slice": null, "box_2d": [200, 400, 500, 600]}], '
    '"overall_impression": "Right upper lobe pneumonia."}\n'
    "```"
)
FOCUSED_ANSWER = (
    "<unused94>thought\nThe opacity projects over the right upper zone.<unused95>"
    "Final Answer: ```json\n"
    '[{"box_2d": [200, 400, 500, 600], "label": "This is definitely pneumonia"}]\n'
    "```"
)
BOX = (200, 400, 500, 600)  # y0, x0, y1, x1 in 0..1000 of the padded square


def expected_pixels(rows: int, cols: int) -> dict[str, float]:
    """BOX in original pixel edge coordinates, by hand: times side / 1000, minus the padding."""
    side = max(rows, cols)
    pad_top, pad_left = (side - rows) // 2, (side - cols) // 2
    y0, x0, y1, x1 = (value * side / 1000 for value in BOX)
    return {
        "row0": y0 - pad_top,
        "col0": x0 - pad_left,
        "row1": y1 - pad_top,
        "col1": x1 - pad_left,
    }


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(PRIMARY_ANSWER))) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: AIServer) -> Settings:
    return engine_settings(tmp_path, server)


def _original() -> np.ndarray:
    return np.asarray(pydicom.dcmread(CXR).pixel_array, dtype=np.uint8)


def _ingest(ctx: Any, data: bytes) -> str:
    result = ctx.ingestor.ingest(data, source="test", actor=ACTOR)
    assert result.outcome == "stored", result
    settle(ctx.pool.get())
    return str(result.instance_id)


def _ids(ctx: Any, study_uid: str) -> tuple[str, str]:
    db = ctx.pool.get()
    (study_id,) = db.execute("SELECT id FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
    (series_id,) = db.execute("SELECT id FROM series WHERE study_id = ?", (study_id,)).fetchone()
    return str(study_id), str(series_id)


def _derived(
    pixels: np.ndarray,
    *,
    study_uid: str,
    series_uid: str,
    modality: str,
    view: str,
    number: int,
    study_date: str,
    monochrome1: bool = False,
) -> bytes:
    """A CR Image Storage file of the NIH patient with these pixels (8 bit) and header."""
    ds = pydicom.dcmread(CXR)
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.StudyDate = study_date
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.InstanceNumber = number
    ds.SeriesNumber = 1
    ds.ImagerPixelSpacing = list(SPACING)
    stored = (255 - pixels) if monochrome1 else pixels
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = np.ascontiguousarray(stored, dtype=np.uint8).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _wait(client: TestClient, headers: dict[str, str], analysis_id: str) -> dict[str, Any]:
    for _ in range(600):
        response = client.get(f"/api/analysis/{analysis_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"analysis {analysis_id} did not finish: {body}")


def _analyse(client: TestClient, headers: dict[str, str], **request: Any) -> dict[str, Any]:
    response = client.post("/api/analysis", json=request, headers=headers)
    assert response.status_code == 202, response.text
    body = _wait(client, headers, response.json()["analysis_id"])
    assert body["status"] in ("completed", "needs_review"), body["error"]
    return body


def _user_content(server: AIServer) -> list[dict[str, Any]]:
    messages = server.requests[-1].body["messages"]
    content: list[dict[str, Any]] = next(m for m in messages if m["role"] == "user")["content"]
    return content


def _jpeg(part: dict[str, Any]) -> bytes:
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return base64.b64decode(url.split(",", 1)[1])


def test_primary_on_the_real_dx_sends_the_image_alone_and_stores_hedged_findings(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer, db: sqlite_utils.Database
) -> None:
    ctx = app.state.ctx
    instance_id = _ingest(ctx, CXR.read_bytes())
    study_id, series_id = _ids(ctx, str(pydicom.dcmread(CXR).StudyInstanceUID))

    body = _analyse(
        client,
        as_role("technician"),
        study_id=study_id,
        clinical_indication="Cough and fever.",
        analysis_type="primary",
    )

    # On the wire: instruction, the one image, the question; no SLICE label anywhere.
    assert len(server.requests) == 1
    content = _user_content(server)
    assert [part["type"] for part in content] == ["text", "image_url", "text"]
    instruction, image, question = content
    assert instruction["text"].startswith("You are assisting a radiologist")
    assert "Study: X-ray of" in instruction["text"]
    assert question["text"].startswith("Based on the visual evidence")
    assert not any("SLICE" in p.get("text", "") for p in content)
    sent = _jpeg(image)
    # The appliance's own preparation of the stored 8-bit image (square: no padding), 896 px.
    assert sent == prepare_radiograph(_original()).images[0].data
    with Image.open(io.BytesIO(sent)) as decoded:
        assert decoded.size == (MODEL_SIDE, MODEL_SIDE)

    # Stored: hedged, disclaimer, UNVERIFIED, linked to the instance, box in pixels, no mm.
    assert body["disclaimer"] == DISCLAIMER and body["verification_flag"] == "UNVERIFIED"
    assert body["series_id"] == series_id
    (finding,) = body["findings"]
    expected = apply_safety(parse_answer(PRIMARY_ANSWER, slice_count=1)).findings[0]
    assert finding["description"] == expected.description
    assert "definitely" not in finding["description"].lower()
    assert "confirms" not in (finding["impression"] or "").lower()
    assert 0 < finding["confidence"] <= 0.85
    assert finding["instance_id"] == instance_id
    assert finding["slice_index"] == 0
    assert finding["measurements"][0]["value"] == 42.0
    box = finding["box"]
    assert [box[k] for k in ("y0", "x0", "y1", "x1")] == list(BOX)
    # 1024 x 1024: no padding, so pixels = box * 1.024.
    assert box["pixels"] == pytest.approx(
        {
            "row0": 204.8,
            "col0": 409.6,
            "row1": 512.0,
            "col1": 614.4,
            "clamped": False,
            "empty": False,
        }
    )
    assert "mm" not in box  # the file has neither Pixel Spacing nor Imager Pixel Spacing

    # Audited with ids and the hash of exactly the image sent.
    (detail_text,) = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'analysis.model_call' AND object_id = ?",
        (body["id"],),
    ).fetchone()
    detail = json.loads(detail_text)
    assert detail["image_count"] == 1 and detail["prompt_id"] == "primary"
    assert detail["images_sha256"] == body["images_sha256"]
    assert detail["images_sha256"] == prepare_radiograph(_original()).sha256
    assert "Cough" not in detail_text


def test_focused_box_maps_back_through_the_padding_of_the_frontal_view(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer
) -> None:
    ctx = app.state.ctx
    original = _original()
    crop = np.ascontiguousarray(original[:, CROP_LEFT : CROP_LEFT + COLS])
    assert crop.shape == (ROWS, COLS)
    study_uid, series_uid = generate_uid(), generate_uid()
    common: dict[str, Any] = {
        "study_uid": study_uid,
        "series_uid": series_uid,
        "study_date": "20240301",
    }
    # The lateral comes first by Instance Number; the frontal (stored MONOCHROME1) must win.
    _ingest(ctx, _derived(np.fliplr(crop), modality="CR", view="LL", number=1, **common))
    frontal_id = _ingest(
        ctx, _derived(crop, modality="CR", view="PA", number=2, monochrome1=True, **common)
    )
    study_id, _ = _ids(ctx, study_uid)
    server.script(Scripted(body=chat_completion(FOCUSED_ANSWER)))

    body = _analyse(
        client,
        as_role("radiologist"),
        study_id=study_id,
        analysis_type="focused",
        target="right upper lobe opacity",
    )

    content = _user_content(server)
    assert [part["type"] for part in content] == ["text", "image_url", "text"]
    assert "bounding boxes" in content[0]["text"]
    assert content[2]["text"].startswith("Query:")
    sent = _jpeg(content[1])
    # The frontal view, MONOCHROME1 inverted back, padded left by 161 and right by 162 columns.
    assert sent == prepare_radiograph(crop).images[0].data
    with Image.open(io.BytesIO(sent)) as decoded:
        grey = np.asarray(decoded.convert("L"), dtype=np.float64)
    scale = MODEL_SIDE / ROWS
    left_pad = int(PAD_LEFT * scale)  # 140 columns of black at 896 px
    assert grey[:, : left_pad - 2].max() <= 8
    assert grey[:, MODEL_SIDE - left_pad + 2 :].max() <= 8
    assert grey[:, left_pad + 4 : MODEL_SIDE - left_pad - 4].mean() > 40

    (finding,) = body["findings"]
    assert "definitely" not in finding["description"].lower()
    assert finding["instance_id"] == frontal_id
    assert finding["slice_index"] == 1  # second in display order
    box = finding["box"]
    assert [box[k] for k in ("y0", "x0", "y1", "x1")] == list(BOX)
    by_hand = expected_pixels(ROWS, COLS)
    # 200 * 1.024 = 204.8; 400 * 1.024 - 161 = 248.6; 500 * 1.024 = 512; 600 * 1.024 - 161 = 453.4
    assert by_hand == pytest.approx({"row0": 204.8, "col0": 248.6, "row1": 512.0, "col1": 453.4})
    assert box["pixels"] == pytest.approx({**by_hand, "clamped": False, "empty": False})
    # Sizes in mm with Imager Pixel Spacing (0.15 mm rows, 0.10 mm columns).
    assert box["mm"] == {"width": 20.48, "height": 46.08, "spacing": "ImagerPixelSpacing"}


def test_comparison_of_radiographs_finds_the_prior_cr_for_a_dx(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer
) -> None:
    ctx = app.state.ctx
    original = _original()
    crop = np.ascontiguousarray(original[:, CROP_LEFT : CROP_LEFT + COLS])
    prior_uid, current_uid, later_uid = generate_uid(), generate_uid(), generate_uid()
    for study_uid, pixels, modality, date in (
        (prior_uid, np.flipud(crop), "CR", "20190101"),
        (current_uid, crop, "DX", "20240301"),
        (later_uid, crop, "DX", "20250101"),  # later: never the prior
    ):
        _ingest(
            ctx,
            _derived(
                pixels,
                study_uid=study_uid,
                series_uid=generate_uid(),
                modality=modality,
                view="PA",
                number=1,
                study_date=date,
            ),
        )
    prior_id, _ = _ids(ctx, prior_uid)
    current_id, current_series = _ids(ctx, current_uid)

    body = _analyse(client, as_role("radiologist"), study_id=current_id, analysis_type="comparison")

    assert body["prior_study_id"] == prior_id
    assert body["prompt_id"] == "comparison"
    content = _user_content(server)
    assert [part["type"] for part in content] == ["text", "image_url", "text", "image_url", "text"]
    assert content[0]["text"].endswith("\n\nPRIOR STUDY")
    assert content[2]["text"] == "PRIOR\n\nCURRENT STUDY"
    assert content[4]["text"].startswith("CURRENT\n\nBased on the visual evidence in the PRIOR")
    assert _jpeg(content[1]) == prepare_radiograph(np.flipud(crop)).images[0].data
    assert _jpeg(content[3]) == prepare_radiograph(crop).images[0].data
    (finding,) = body["findings"]
    assert finding["series_id"] == current_series
    assert "definitely" not in finding["description"].lower()


def test_a_radiograph_whose_file_is_gone_fails_with_the_reason(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer, db: sqlite_utils.Database
) -> None:
    ctx = app.state.ctx
    instance_id = _ingest(ctx, CXR.read_bytes())
    study_id, _ = _ids(ctx, str(pydicom.dcmread(CXR).StudyInstanceUID))
    (key,) = db.execute("SELECT storage_key FROM instances WHERE id = ?", (instance_id,)).fetchone()
    ctx.store.path(key).unlink()
    headers = as_role("radiologist")
    response = client.post("/api/analysis", json={"study_id": study_id}, headers=headers)
    assert response.status_code == 202, response.text
    body = _wait(client, headers, response.json()["analysis_id"])
    assert body["status"] == "failed"
    assert "no image of series" in body["error"] and "radiant fsck" in body["error"]
    assert body["findings"] == []
    assert server.requests == []  # nothing reached the model
