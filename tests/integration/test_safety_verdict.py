"""The safety layer's whole verdict is stored, carried into the draft and decided on before
signing: an answer (from the OpenAI-protocol test server) with an impression that cannot be
hedged (a quoted diagnosis), a confidence of 1.7, a unit "furlongs" and a bare diagnosis.
Rejected findings stay in the report's history; "furlongs" never reaches an export."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.config import Settings
from tests.ai_server import AIServer, Scripted, chat_completion
from tests.reporting import ingest_ct

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
ANSWER = (
    "```json\n"
    + json.dumps(
        {
            "findings": [
                {
                    "location": "left temporal lobe",
                    "description": "Glioblastoma.",
                    "impression": "Glioblastoma",
                    "confidence": 1.7,
                    "slice": 5,
                    "measurements": [{"name": "long axis", "value": 3, "unit": "furlongs"}],
                },
                {
                    "location": "paranasal sinus",
                    "description": "Mucosal thickening may be present in the maxillary sinus.",
                    "confidence": 0.4,
                    "measurements": [{"name": "thickness", "value": 4, "unit": "mm"}],
                },
            ],
            "overall_impression": 'It was called "glioma".',  # quoted: cannot be hedged
        }
    )
    + "\n```"
)


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(ANSWER))) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: AIServer) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", ai_engine="openai", ai_endpoint=server.url, ai_max_attempts=1
    )


def _wait(client: TestClient, headers: dict[str, str], analysis_id: str) -> dict[str, Any]:
    for _ in range(600):
        body: dict[str, Any] = client.get(f"/api/analysis/{analysis_id}", headers=headers).json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.1)
    raise AssertionError("the analysis did not finish")


def _reasons(flags: list[dict[str, Any]]) -> list[str]:
    return [f["reason"] for f in flags]


def test_every_flag_is_stored_carried_and_decided_before_signing(
    app: FastAPI, client: TestClient, as_role: Headers, tmp_path: Path
) -> None:
    ct = ingest_ct(app.state.ctx)
    rad = as_role("radiologist")
    accepted = client.post(
        "/api/analysis",
        json={"study_id": ct.study_id, "clinical_indication": "Seizure."},
        headers=rad,
    )
    assert accepted.status_code == 202, accepted.text
    analysis = _wait(client, rad, accepted.json()["analysis_id"])
    assert analysis["status"] == "needs_review", analysis["error"]

    # Stored: the analysis's own verdict and each finding's flags.
    assert _reasons(analysis["overall_flags"]) == ["quotation"]
    assert analysis["overall_flags"][0]["phrase"] == "glioma"
    reasons = " | ".join(analysis["review_reasons"])
    assert "overall impression: 'glioma' left as written" in reasons
    assert "unit 'furlongs' not recognised" in reasons
    assert "confidence 1.7 out of range 0..1, replaced by 0.02" in reasons
    first = analysis["findings"][0]
    flags = {f["reason"]: f for f in first["flags"]}
    assert flags["unit_not_recognised"]["phrase"] == "furlongs"
    assert flags["confidence_out_of_range"]["replacement"] == "0.02"
    assert any(  # the bare diagnosis, hedged
        f["reason"] == "reworded" and f["phrase"].startswith("Glioblastoma") for f in first["flags"]
    )
    assert first["impression"] != "Glioblastoma" and "glioblastoma" in first["impression"]
    assert first["measurements"][0]["unit"] == ""  # the number kept, the unit not

    # The draft carries them: the impression goes in marked, awaiting a decision.
    draft = client.post(
        "/api/reports",
        json={"study_id": ct.study_id, "analysis_id": analysis["id"]},
        headers=rad,
    )
    assert draft.status_code == 201, draft.text
    rid = draft.json()["id"]
    content = draft.json()["content"]
    assert content["impression"] == 'It was called "glioma".'
    assert content["impression_review"] == "pending"
    assert _reasons(content["impression_flags"]) == ["quotation"]
    f1, f2 = content["findings"]
    assert {"unit_not_recognised", "confidence_out_of_range", "reworded"} <= set(
        _reasons(f1["flags"])
    )
    assert f1["measurements"][0]["unit"] == "1"

    # Signing asks for a decision on each flagged item: a 409 problem document lists them.
    sign = {"ai_findings_reviewed": True}
    refused = client.patch(f"/api/reports/{rid}/finalize", json=sign, headers=rad)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["undecided"] == [f1["id"], "impression"]
    assert refused.json()["items"][1] == {
        "id": "impression", "kind": "impression", "location": None, "reasons": ["quotation"]
    }
    rejected = client.patch(
        f"/api/reports/{rid}",
        json={"impression": "Possible left temporal mass; MRI may help characterise it."},
        headers=rad,
    )
    assert rejected.json()["content"]["impression_review"] == "edited"
    still = client.patch(f"/api/reports/{rid}/finalize", json=sign, headers=rad)
    assert still.status_code == 409 and still.json()["undecided"] == [f1["id"]]

    decided = client.post(
        f"/api/reports/{rid}/review", json={"item": f1["id"], "decision": "rejected"}, headers=rad
    )
    assert decided.status_code == 200, decided.text
    signed = client.patch(f"/api/reports/{rid}/finalize", json=sign, headers=rad)
    assert signed.status_code == 200, signed.text
    final = signed.json()["content"]
    assert [f["id"] for f in final["findings"]] == [f2["id"]]
    (gone,) = final["rejected_findings"]
    assert gone["finding"]["id"] == f1["id"] and gone["rejected_by"] == "radiologist-user"
    history = client.get(f"/api/reports/{rid}/versions", headers=rad).json()
    assert history["chain_ok"] is True, history["chain_problem"]

    # "furlongs" reaches no export as a unit: FHIR and the SR never name it; the JSON export
    # keeps it only as the flag that says it was not recognised.
    assert "furlong" not in client.get(f"/api/export/report/{rid}/fhir", headers=rad).text
    exported = client.get(f"/api/export/report/{rid}/json", headers=rad).json()["content"]
    items = exported["findings"] + [g["finding"] for g in exported["rejected_findings"]]
    assert {m["unit"] for f in items for m in f["measurements"]} <= {"1", "mm"}
    mentions = [
        flag["reason"] for f in items for flag in f["flags"] if "furlong" in json.dumps(flag)
    ]
    assert mentions == ["unit_not_recognised"]
    sr = tmp_path / "r.dcm"
    sr.write_bytes(client.get(f"/api/export/report/{rid}/dicom-sr", headers=rad).content)
    dump = subprocess.run(["dsrdump", "+Pl", str(sr)], capture_output=True, text=True, check=True)
    assert "furlong" not in dump.stdout
