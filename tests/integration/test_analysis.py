"""Analyses through the real API on a real head CT, with the recording OpenAI-protocol server
as the engine: images and prompt order on the wire, the safety layer on what is stored, the
audit of the model call, roles, the engine ``none`` refusal and recovery after a crash."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from ai.parsing import parse_answer
from ai.safety import DISCLAIMER, apply_safety
from appliance.app import create_app
from appliance.audit.models import Actor
from appliance.auth import service as auth_service
from appliance.auth.models import Role, UserCreate
from appliance.config import Settings
from appliance.db.connection import open_database
from appliance.db.rows import new_id, now_iso
from appliance.jobs.models import INTERRUPTED
from appliance.studies.stability import Stable
from tests.ai_server import BOX_ANSWER, AIServer, Scripted, chat_completion, engine_settings
from tests.conftest import PASSWORD
from tests.dicom_files import instance_files
from tests.reporting import CT_SET, CtStudy, ingest_ct, settle

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]

ANSWER = (
    "<unused94>thought\nA head CT. Slice 3 shows a hyperdense lesion in the right frontal "
    "lobe. I will answer in JSON.<unused95>"
    "```json\n"
    '{"findings": [{"description": "This is definitely a hemorrhage in the right frontal '
    'lobe.", "location": "right frontal lobe", "impression": "This is an acute bleed.", '
    '"confidence": 0.9, "measurements": [{"name": "diameter", "value": 14, "unit": "mm"}], '
    '"slice": 3, "box_2d": [300, 360, 380, 450]}], '
    '"overall_impression": "Acute intracranial hemorrhage."}\n'
    "```"
)


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(ANSWER, prompt_tokens=9000))) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: AIServer) -> Settings:
    return engine_settings(tmp_path, server)


@pytest.fixture
def ct(app: FastAPI, client: TestClient) -> CtStudy:
    return ingest_ct(app.state.ctx)


def _wait(client: TestClient, headers: dict[str, str], analysis_id: str) -> dict[str, Any]:
    for _ in range(600):
        response = client.get(f"/api/analysis/{analysis_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"analysis {analysis_id} did not finish: {body}")


def test_primary_analysis_end_to_end(
    client: TestClient,
    as_role: Headers,
    ct: CtStudy,
    server: AIServer,
    db: sqlite_utils.Database,
) -> None:
    tech = as_role("technician")
    response = client.post(
        "/api/analysis",
        json={
            "study_id": ct.study_id,
            "clinical_indication": "Headache after a fall.",
            "analysis_type": "primary",
        },
        headers=tech,
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    analysis_id = accepted["analysis_id"]
    body = _wait(client, as_role("viewer"), analysis_id)
    assert body["status"] in ("completed", "needs_review"), body["error"]
    assert body["stage"] == "done"

    # What the server received: instruction first, each JPEG followed by SLICE n, question last.
    assert len(server.requests) == 1
    messages = server.requests[0].body["messages"]
    content = next(m for m in messages if m["role"] == "user")["content"]
    images = [p for p in content if p["type"] == "image_url"]
    # Every slice of the volume (the varying spacing is resampled: more slices than files).
    (shape_text,) = db.execute(
        "SELECT shape FROM volumes WHERE series_id = ? AND status = 'ready'", (ct.series_id,)
    ).fetchone()
    slices = json.loads(shape_text)[2]
    assert len(images) == slices >= len(ct.instance_ids)
    assert content[0]["type"] == "text" and content[-1]["type"] == "text"
    assert content[0]["text"].startswith("You are assisting a radiologist")
    for number, position in enumerate(range(1, len(content), 2), start=1):
        url = content[position]["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(url.split(",", 1)[1])[:3] == b"\xff\xd8\xff"
        if number < len(images):
            assert content[position + 1] == {"type": "text", "text": f"SLICE {number}"}
    # The last label and the question travel as one text part, a blank line between them.
    assert content[-1]["text"].startswith(f"SLICE {len(images)}\n\nBased on the visual")
    assert len(content) == 2 * len(images) + 1

    # What was stored: hedged, with confidences, disclaimer, UNVERIFIED, provenance.
    assert body["engine"] == "openai"
    assert body["model_id"]
    assert body["prompt_id"] == "primary" and body["prompt_version"]
    assert body["tokens_in"] == 9000 and body["latency_ms"] is not None
    assert len(body["images_sha256"]) == 64
    assert body["disclaimer"] == DISCLAIMER
    assert body["verification_flag"] == "UNVERIFIED"
    assert body["series_id"] == ct.series_id
    (finding,) = body["findings"]
    assert "definitely" not in finding["description"].lower()
    assert finding["description"] != "This is definitely a hemorrhage in the right frontal lobe."
    assert 0 < finding["confidence"] <= 0.9
    assert finding["measurements"][0]["value"] == 14.0
    assert finding["measurements"][0]["unit"] == "mm"
    box = finding["box"]
    assert [box[k] for k in ("y0", "x0", "y1", "x1")] == [300, 360, 380, 450]
    assert box["pixels"]["row1"] > box["pixels"]["row0"]
    assert box["mm"]["width"] > 0
    assert finding["series_id"] == ct.series_id
    assert finding["slice_index"] is not None and 0 <= finding["slice_index"] < len(ct.instance_ids)
    assert finding["instance_id"] == ct.instance_ids[finding["slice_index"]]
    # Exactly what the safety layer makes of the answer, nothing of the raw wording.
    expected = apply_safety(parse_answer(ANSWER, slice_count=len(images)))
    assert finding["description"] == expected.findings[0].description
    assert finding["impression"] == expected.findings[0].impression
    assert finding["confidence"] == pytest.approx(expected.findings[0].confidence.value)
    assert body["overall_impression"] == expected.overall_impression
    assert body["status"] == ("needs_review" if expected.needs_review else "completed")

    # The model call is audited with ids only.
    rows = db.execute(
        "SELECT actor, outcome, detail FROM audit_log WHERE action = 'analysis.model_call'"
        " AND object_id = ?",
        (analysis_id,),
    ).fetchall()
    assert len(rows) == 1
    actor, outcome, detail_text = rows[0]
    detail = json.loads(detail_text)
    assert actor == "technician-user" and outcome == "success"
    assert detail["study_id"] == ct.study_id
    assert detail["prompt_id"] == "primary"
    assert detail["images_sha256"] == body["images_sha256"]
    assert detail["engine"] == "openai" and detail["model_id"] == body["model_id"]
    assert detail["tokens_in"] == 9000 and "latency_ms" in detail
    assert "Headache" not in detail_text

    # The job is done; the study lists the analysis.
    job = client.get(accepted["job_url"], headers=tech).json()
    assert job["status"] == "done" and job["kind"] == "analysis"
    listed = client.get(f"/api/analysis/study/{ct.study_id}/analyses", headers=as_role("viewer"))
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()] == [analysis_id]

    # A viewer may not request one.
    refused = client.post(
        "/api/analysis", json={"study_id": ct.study_id}, headers=as_role("viewer")
    )
    assert refused.status_code == 403


def test_engine_none_answers_503_and_queues_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "none-data")
    app = create_app(settings, with_ui=False, with_receiver=False)
    with TestClient(app, raise_server_exceptions=False) as none_client:
        ct = ingest_ct(app.state.ctx)
        auth_service.create_user(
            app.state.ctx.pool.get(),
            UserCreate(username="rad", password=PASSWORD, role=Role.RADIOLOGIST),
            Actor.system("test"),
        )
        login = none_client.post("/api/auth/token", data={"username": "rad", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        response = none_client.post(
            "/api/analysis", json={"study_id": ct.study_id}, headers=headers
        )
        assert response.status_code == 503, response.text
        problem = response.json()
        assert "RADIANT_AI_ENGINE" in problem["detail"]
        assert response.headers["content-type"].startswith("application/problem+json")
        db = app.state.ctx.pool.get()
        assert db.execute("SELECT COUNT(*) FROM analyses").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'analysis'").fetchone()[0] == 0


def test_a_job_left_running_by_a_crash_fails_the_analysis(settings: Settings) -> None:
    app = create_app(settings, with_ui=False, with_receiver=False)
    ct = ingest_ct(app.state.ctx)
    db = open_database(settings.db_path)
    try:
        analysis_id, job_id, now = new_id(), new_id(), now_iso()
        db.execute(
            "INSERT INTO analyses (id, study_id, analysis_type, status, stage, created_at,"
            " started_at) VALUES (?, ?, 'primary', 'running', 'inferring', ?, ?)",
            (analysis_id, ct.study_id, now, now),
        )
        db.execute(
            "INSERT INTO jobs (id, kind, payload, status, stage, progress, attempts, created_at,"
            " started_at, heartbeat_at) VALUES (?, 'analysis', ?, 'running', 'inferring', 0.3,"
            " 1, ?, ?, ?)",
            (job_id, json.dumps({"analysis_id": analysis_id}), now, now, now),
        )
        db.conn.commit()
        # A fresh app (its runner) starts on the database the "crashed" process left.
        with TestClient(app, raise_server_exceptions=False):
            job = db.execute("SELECT status, error FROM jobs WHERE id = ?", (job_id,)).fetchone()
            assert tuple(job) == ("failed", INTERRUPTED)
            row = db.execute(
                "SELECT status, error FROM analyses WHERE id = ?", (analysis_id,)
            ).fetchone()
            assert tuple(row) == ("failed", INTERRUPTED)
    finally:
        db.conn.close()


def test_cancel_through_the_jobs_api(
    client: TestClient, as_role: Headers, ct: CtStudy, server: AIServer
) -> None:
    server.script(Scripted(body=chat_completion(ANSWER), delay_s=2.0))
    headers = as_role("radiologist")
    accepted = client.post(
        "/api/analysis", json={"study_id": ct.study_id, "analysis_type": "primary"}, headers=headers
    ).json()
    for _ in range(600):
        stage = client.get(accepted["status_url"], headers=headers).json()["stage"]
        if stage == "inferring":
            break
        time.sleep(0.05)
    assert stage == "inferring"
    cancelled = client.post(f"/api/jobs/{accepted['job_id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    body = _wait(client, headers, accepted["analysis_id"])
    assert body["status"] == "cancelled"
    assert body["findings"] == []
    job = client.get(accepted["job_url"], headers=headers).json()
    assert job["status"] == "cancelled"


def _dated_copy(ctx: Any, study_date: str) -> tuple[str, str]:
    """The head CT as another study of the same patient (new UIDs, this date): its study and
    series ids."""
    study_uid, series_uid = generate_uid(), generate_uid()
    for path in instance_files(CT_SET):
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.StudyDate = study_date
        out = io.BytesIO()
        dataset.save_as(out, enforce_file_format=True)
        result = ctx.ingestor.ingest(out.getvalue(), source="test", actor=Actor.system("test"))
        assert result.outcome == "stored", result
    db = ctx.pool.get()
    settle(db)
    (study_id,) = db.execute("SELECT id FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
    (series_id,) = db.execute(
        "SELECT id FROM series WHERE series_uid = ?", (series_uid,)
    ).fetchone()
    return str(study_id), str(series_id)


def test_comparison_finds_the_prior_automatically(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer
) -> None:
    current_id, current_series = _dated_copy(app.state.ctx, "20240301")
    prior_id, _ = _dated_copy(app.state.ctx, "20190101")
    _dated_copy(app.state.ctx, "20250101")  # later: never the prior
    headers = as_role("radiologist")
    accepted = client.post(
        "/api/analysis",
        json={"study_id": current_id, "analysis_type": "comparison"},
        headers=headers,
    )
    assert accepted.status_code == 202, accepted.text
    body = _wait(client, headers, accepted.json()["analysis_id"])
    assert body["status"] in ("completed", "needs_review"), body["error"]
    assert body["prior_study_id"] == prior_id
    assert body["prompt_id"] == "comparison"
    content = next(m for m in server.requests[-1].body["messages"] if m["role"] == "user")[
        "content"
    ]
    texts = [p["text"] for p in content if p["type"] == "text"]
    prior_count = sum(1 for t in texts if t.startswith("PRIOR SLICE"))
    assert texts[0].endswith("\n\nPRIOR STUDY")
    assert texts[1 : prior_count + 1] == [
        *(f"PRIOR SLICE {n}" for n in range(1, prior_count)),
        f"PRIOR SLICE {prior_count}\n\nCURRENT STUDY",
    ]
    assert texts[prior_count + 1] == "CURRENT SLICE 1"
    assert texts[-1].startswith("CURRENT SLICE ")
    assert "\n\nBased on the visual evidence in the PRIOR and CURRENT" in texts[-1]
    (finding,) = body["findings"]
    assert finding["series_id"] == current_series


def test_focused_stores_the_box_on_one_slice(
    client: TestClient, as_role: Headers, ct: CtStudy, server: AIServer
) -> None:
    server.script(Scripted(body=chat_completion(BOX_ANSWER)))
    headers = as_role("admin")
    accepted = client.post(
        "/api/analysis",
        json={"study_id": ct.study_id, "analysis_type": "focused", "target": "lesion"},
        headers=headers,
    )
    assert accepted.status_code == 202, accepted.text
    body = _wait(client, headers, accepted.json()["analysis_id"])
    assert body["status"] in ("completed", "needs_review"), body["error"]
    content = next(m for m in server.requests[-1].body["messages"] if m["role"] == "user")[
        "content"
    ]
    assert sum(1 for p in content if p["type"] == "image_url") == 1
    boxed = [f for f in body["findings"] if f["box"]]
    assert boxed, body["findings"]
    box = boxed[0]["box"]
    assert [box[k] for k in ("y0", "x0", "y1", "x1")] == [180, 120, 420, 470]
    assert "pneumonia" in (box["label"] or "")
    assert 0 <= boxed[0]["confidence"] <= 1


def test_ai_auto_queues_one_primary_analysis_per_stable_study(
    tmp_path: Path, server: AIServer
) -> None:
    settings = Settings(
        data_dir=tmp_path / "auto-data",
        ai_engine="openai",
        ai_endpoint=server.url,
        ai_max_attempts=1,
        ai_auto=True,
    )
    app = create_app(settings, with_ui=False, with_receiver=False)
    with TestClient(app, raise_server_exceptions=False):
        ct = ingest_ct(app.state.ctx)
        (listener,) = [
            item
            for item in app.state.services.stability.listeners
            if item.__qualname__.startswith("auto_analysis_listener")
        ]
        listener(Stable("series", ct.series_id))  # a series alone: nothing
        listener(Stable("study", ct.study_id))
        listener(Stable("study", ct.study_id))  # already has a primary analysis
        db = app.state.ctx.pool.get()
        rows = db.execute("SELECT id, analysis_type FROM analyses").fetchall()
        assert [r[1] for r in rows] == ["primary"]
        for _ in range(600):
            (status,) = db.execute("SELECT status FROM analyses").fetchone()
            if status not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert status in ("completed", "needs_review")
