"""A CT series longer than 85 slices: exactly 85 JPEG images reach the OpenAI-protocol server,
each followed by ``SLICE n`` (n = 1..85, the position in the prompt), and they are the slices
MedGemma's uniform sampling picks: first and last included, slice
``floor(i * (count - 1) / 84 + 1/2)`` for i = 0..84 (see ``ai/imaging.py``).

Always run: a synthetic 120-slice CT Image Storage series, derived from a real slice of the GE
head CT in ``tests/data`` (its pixels, half resolution, axial geometry, 2.5 mm steps), written
with pydicom and ingested through the real ingest path. Each slice carries its own index as a
7-bit code of +1000/-1000 HU squares in its top rows, so the test reads back from each JPEG
sent which slice it is. When ``../shared/data/dicom/ct_chest_lidc_0001`` (133 slices, LIDC-IDRI)
is present, the same is checked on that real chest CT.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.uid import generate_uid

from ai.imaging import prepare_ct
from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.volumes.nifti import read_nifti
from tests.ai_server import CT_HEAD, AIServer, Scripted, chat_completion, engine_settings
from tests.integration.test_analysis import ANSWER
from tests.reporting import settle

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
ACTOR = Actor.system("test")
LIDC = Path(__file__).resolve().parents[3] / "shared/data/dicom/ct_chest_lidc_0001"

SLICES = 120
MAX_IMAGES = 85
BITS = 7  # 2**7 = 128 > SLICES
BLOCK, STEP, TOP = 12, 16, 8  # marker squares: side, pitch, first row (of a 256 px slice)


def expected_indices(count: int) -> list[int]:
    """floor(i * (count - 1) / 84 + 1/2), i = 0..84, in exact arithmetic."""
    return [int(Fraction(i * (count - 1), MAX_IMAGES - 1) + Fraction(1, 2)) for i in range(85)]


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(ANSWER))) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: AIServer) -> Settings:
    return engine_settings(tmp_path, server)


def _marked(base: np.ndarray, index: int) -> np.ndarray:
    """``base`` with ``index`` written as BITS squares (+1000 HU = 1, -1000 HU = 0) and one
    always-on square after them (so a flipped image cannot decode as a valid code)."""
    pixels = base.copy()
    for bit in range(BITS + 1):
        on = bit == BITS or (index >> bit) & 1
        col = TOP + bit * STEP
        pixels[TOP : TOP + BLOCK, col : col + BLOCK] = 1000 if on else -1000
    return pixels


def _decode_index(jpeg: bytes) -> int:
    with Image.open(io.BytesIO(jpeg)) as image:
        red = np.asarray(image.convert("RGB"), dtype=np.float64)[..., 0]  # -1024..1024 HU
    bits = []
    for bit in range(BITS + 1):
        col = TOP + bit * STEP
        bits.append(red[TOP + 3 : TOP + BLOCK - 3, col + 3 : col + BLOCK - 3].mean() > 128)
    assert bits[BITS], "the always-on marker is missing: the slice is flipped or not ours"
    return sum(1 << bit for bit in range(BITS) if bits[bit])


def _synthetic_series(ctx: Any) -> tuple[str, dict[int, str]]:
    """Ingest the 120-slice series; its study id and instance id by 0-based slice index."""
    files = sorted(CT_HEAD.glob("*.dcm"))
    source = pydicom.dcmread(files[len(files) // 2])
    base = np.asarray(source.pixel_array, dtype=np.int16)[::2, ::2]  # 256 x 256, real anatomy
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    spacing = [float(v) * 2 for v in source.PixelSpacing]
    uids: dict[int, str] = {}
    for index in range(SLICES):
        ds = pydicom.dcmread(files[len(files) // 2])
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = "Axial 2.5mm synthetic"
        ds.SeriesNumber = 900
        ds.InstanceNumber = index + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-125.0, -125.0, -150.0 + 2.5 * index]
        ds.SliceLocation = -150.0 + 2.5 * index
        ds.SliceThickness = 2.5
        ds.PixelSpacing = spacing
        if "GantryDetectorTilt" in ds:
            del ds.GantryDetectorTilt
        pixels = _marked(base, index)
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.astype(np.int16).tobytes()
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        result = ctx.ingestor.ingest(out.getvalue(), source="test", actor=ACTOR)
        assert result.outcome == "stored", result
        uids[index] = str(result.instance_id)
    db = ctx.pool.get()
    settle(db)
    (study_id,) = db.execute("SELECT id FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
    return str(study_id), uids


def _run(client: TestClient, headers: dict[str, str], study_id: str) -> dict[str, Any]:
    response = client.post(
        "/api/analysis", json={"study_id": study_id, "analysis_type": "primary"}, headers=headers
    )
    assert response.status_code == 202, response.text
    analysis_id = response.json()["analysis_id"]
    for _ in range(1200):
        body: dict[str, Any] = client.get(f"/api/analysis/{analysis_id}", headers=headers).json()
        if body["status"] not in ("queued", "running"):
            assert body["status"] in ("completed", "needs_review"), body["error"]
            return body
        time.sleep(0.1)
    raise AssertionError(f"analysis {analysis_id} did not finish")


def _sent(server: AIServer) -> tuple[list[bytes], list[str]]:
    """The images of the one request (in order) and the text parts."""
    (request,) = server.requests
    content = next(m for m in request.body["messages"] if m["role"] == "user")["content"]
    assert content[0]["type"] == "text" and content[-1]["type"] == "text"
    # Strictly alternating: instruction, then (image, label) per slice.
    assert [p["type"] for p in content[1:]] == ["image_url", "text"] * ((len(content) - 1) // 2)
    images = []
    for part in content[1::2]:
        url = part["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        images.append(base64.b64decode(url.split(",", 1)[1]))
    return images, [p["text"] for p in content[2::2]]


def _assert_labels(labels: list[str]) -> None:
    assert labels[:-1] == [f"SLICE {n}" for n in range(1, MAX_IMAGES)]
    assert labels[-1].startswith(f"SLICE {MAX_IMAGES}\n\nBased on the visual evidence")


def test_a_120_slice_ct_sends_exactly_85_uniformly_sampled_slices(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer, db: sqlite_utils.Database
) -> None:
    study_id, instance_of = _synthetic_series(app.state.ctx)
    body = _run(client, as_role("radiologist"), study_id)

    images, labels = _sent(server)
    assert len(images) == MAX_IMAGES
    _assert_labels(labels)
    wanted = expected_indices(SLICES)
    assert wanted[0] == 0 and wanted[-1] == SLICES - 1 and wanted[1] == 1 and wanted[2] == 3
    assert [_decode_index(jpeg) for jpeg in images] == wanted

    # The instruction states the count; the audit records 85 images.
    instruction = server.requests[0].body["messages"][0]["content"][0]["text"]
    assert "85 slices of the volume" in instruction
    (detail,) = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'analysis.model_call' AND object_id = ?",
        (body["id"],),
    ).fetchone()
    assert json.loads(detail)["image_count"] == MAX_IMAGES

    # "slice": 3 in the answer is the third image sent, i.e. slice wanted[2] of the series.
    (finding,) = body["findings"]
    assert finding["slice_index"] == wanted[2]
    assert finding["instance_id"] == instance_of[wanted[2]]


@pytest.mark.skipif(not LIDC.is_dir(), reason=f"the LIDC-IDRI chest CT is not at {LIDC}")
def test_the_lidc_chest_ct_of_133_slices_sends_exactly_85(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer, db: sqlite_utils.Database
) -> None:
    ctx = app.state.ctx
    files = sorted(LIDC.glob("*.dcm"))
    assert len(files) == 133
    for path in files:
        result = ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
        assert result.outcome == "stored", result
    settle(db)
    (study_id,) = db.execute("SELECT id FROM studies").fetchone()
    body = _run(client, as_role("radiologist"), str(study_id))

    images, labels = _sent(server)
    assert len(images) == MAX_IMAGES
    _assert_labels(labels)
    # They are the volume's slices picked by the sampling, in order.
    (key,) = db.execute(
        "SELECT storage_key FROM volumes WHERE series_id = ? AND status = 'ready'",
        (body["series_id"],),
    ).fetchone()
    voxels = np.asarray(read_nifti(ctx.store.path(key)).voxels)
    assert voxels.shape[0] == 133
    prepared = prepare_ct(voxels)
    assert prepared.slice_indices == expected_indices(133)
    assert images == [image.data for image in prepared.images]
