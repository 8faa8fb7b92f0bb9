"""Triage through the real API: the OpenAI-protocol test server answers; the study's urgency is
stored from the model's call and the critical findings list, the worklist puts an unreported
critical study first, a radiologist confirms or clears it (audited), a routine answer and a
negated critical term raise nothing.

Studies: the real GE head CT of ``tests/data`` (the subdural haematoma answer) and copies of the
real NIH chest radiograph with new UIDs and patients (routine and negated answers)."""

from __future__ import annotations

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

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.studies.stability import mark_stable
from tests.ai_server import CXR, AIServer, Scripted, chat_completion, engine_settings
from tests.reporting import ingest_ct

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
ACTOR = Actor.system("test")


def answer(findings: list[dict[str, Any]], **extra: Any) -> str:
    body = {"findings": findings, **extra}
    return "<unused94>thought\nReading.<unused95>```json\n" + json.dumps(body) + "\n```"


SUBDURAL = answer(
    [
        {
            "description": "Acute subdural hematoma over the left convexity, possibly requires "
            "surgery.",
            "location": "left convexity",
            "impression": "Acute subdural hematoma.",
            "confidence": 0.8,
        }
    ],
    urgency="critical",
    urgency_reason="Acute subdural hematoma with mass effect.",
    overall_impression="Acute subdural hematoma.",
)
ROUTINE = answer(
    [{"description": "Clear lungs.", "location": "chest", "confidence": 0.7}],
    urgency="routine",
    overall_impression="No acute abnormality.",
)
NEGATED = answer(
    [{"description": "No pneumothorax. No free air.", "location": "chest", "confidence": 0.7}],
    overall_impression="No pneumothorax.",
)


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(ROUTINE))) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: AIServer) -> Settings:
    return engine_settings(tmp_path, server)


def _radiograph(ctx: Any, name: str) -> str:
    """A copy of the real chest radiograph as a new study of a new patient; its study id."""
    ds = pydicom.dcmread(CXR)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = f"MRN-{name}"
    ds.PatientName = f"{name}^Test"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    result = ctx.ingestor.ingest(out.getvalue(), source="test", actor=ACTOR)
    assert result.outcome == "stored", result
    db = ctx.pool.get()
    mark_stable(db, stable_age_s=0)  # arrived: complete (a technician analyses complete studies)
    row = db.execute(
        "SELECT id FROM studies WHERE study_uid = ?", (str(ds.StudyInstanceUID),)
    ).fetchone()
    return str(row[0])


def _analyse(client: TestClient, headers: dict[str, str], study_id: str) -> dict[str, Any]:
    response = client.post("/api/analysis", json={"study_id": study_id}, headers=headers)
    assert response.status_code == 202, response.text
    analysis_id = response.json()["analysis_id"]
    for _ in range(1200):
        body: dict[str, Any] = client.get(f"/api/analysis/{analysis_id}", headers=headers).json()
        if body["status"] not in ("queued", "running"):
            assert body["status"] in ("completed", "needs_review"), body["error"]
            return body
        time.sleep(0.1)
    raise AssertionError(f"analysis {analysis_id} did not finish")


def _worklist(client: TestClient, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    response = client.get("/api/studies", params=query, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_subdural_answer_is_critical_sorted_first_and_reviewed(
    app: FastAPI,
    client: TestClient,
    as_role: Headers,
    server: AIServer,
    db: sqlite_utils.Database,
) -> None:
    ctx = app.state.ctx
    tech = as_role("technician")
    head = ingest_ct(ctx).study_id
    routine = _radiograph(ctx, "Routine")
    negated = _radiograph(ctx, "Negated")  # arrives last: newest first by arrival

    server.script(Scripted(body=chat_completion(SUBDURAL)))
    critical = _analyse(client, tech, head)
    assert critical["urgency"] == "critical"
    server.script(Scripted(body=chat_completion(ROUTINE)))
    assert _analyse(client, tech, routine)["urgency"] == "routine"
    server.script(Scripted(body=chat_completion(NEGATED)))
    assert _analyse(client, tech, negated)["urgency"] == "routine"

    # The study's urgency: critical, UNVERIFIED, with the model's hedged reason and the list.
    body = client.get(f"/api/studies/{head}/urgency", headers=tech).json()
    assert (body["level"], body["verification_flag"]) == ("critical", "UNVERIFIED")
    assert body["analysis_id"] == critical["id"]
    detail = body["detail"]
    assert detail["model_level"] == "critical" and detail["list_level"] == "critical"
    assert detail["model_reason"] != "Acute subdural hematoma with mass effect."
    assert {m["finding_id"] for m in detail["matches"]} == {"intracranial_hemorrhage"}
    for other in (routine, negated):
        assert client.get(f"/api/studies/{other}/urgency", headers=tech).json()["level"] == (
            "routine"
        )

    # Sorted first by default, though it arrived first; by arrival it is last.
    items = _worklist(client, tech)
    assert [i["id"] for i in items] == [head, negated, routine]
    assert [i["urgency"] for i in items] == ["critical", "routine", "routine"]
    assert [i["id"] for i in _worklist(client, tech, sort="arrival")] == [negated, routine, head]
    assert [i["id"] for i in _worklist(client, tech, urgent="true")] == [head]

    # One alert, for the critical study only; no patient data in it.
    (alert,) = client.get("/api/triage/alerts", headers=tech).json()
    assert (alert["study_id"], alert["analysis_id"]) == (head, critical["id"])
    assert "Test" not in json.dumps(alert)

    # Only a radiologist reviews it; confirming is audited and verifies it.
    url = f"/api/analysis/{critical['id']}/urgency/review"
    assert client.post(url, json={"decision": "confirm"}, headers=tech).status_code == 403
    radiologist = as_role("radiologist")
    confirmed = client.post(url, json={"decision": "confirm"}, headers=radiologist)
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["review"], confirmed.json()["verification_flag"]) == (
        "confirmed",
        "VERIFIED",
    )
    # Clearing it drops it to routine and out of the urgent filter.
    cleared = client.post(url, json={"decision": "clear"}, headers=radiologist)
    assert cleared.json()["level"] == "routine"
    assert _worklist(client, tech, urgent="true") == []
    assert [i["id"] for i in _worklist(client, tech)] == [negated, routine, head]
    # Clearing the urgency ends the alert even unacknowledged.
    assert client.get("/api/triage/alerts", headers=tech).json() == []
    ack = f"/api/triage/alerts/{alert['id']}/acknowledge"
    assert client.post(ack, json={"name": " "}, headers=tech).status_code == 422
    assert client.post(ack, json={"name": "Amina"}, headers=tech).status_code == 204
    assert client.post(ack, json={"name": "Amina"}, headers=tech).status_code == 409
    (acked,) = db.execute(
        "SELECT detail, actor FROM audit_log WHERE action = 'triage.alert_ack'"
    ).fetchall()
    assert json.loads(acked[0])["name"] == "Amina" and acked[1] == "technician-user"
    rows = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'analysis.urgency_review' ORDER BY rowid"
    ).fetchall()
    assert [json.loads(r[0])["decision"] for r in rows] == ["confirmed", "cleared"]
    # A routine analysis has nothing to review.
    routine_analysis = db.execute(
        "SELECT id FROM analyses WHERE study_id = ?", (routine,)
    ).fetchone()[0]
    refused = client.post(
        f"/api/analysis/{routine_analysis}/urgency/review",
        json={"decision": "confirm"},
        headers=radiologist,
    )
    assert refused.status_code == 409
