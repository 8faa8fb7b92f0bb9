"""No analysis of a half-arrived study: a head CT sent by C-STORE (pynetdicom, to the
appliance's own receiver) in two halves, the OpenAI-protocol test server as the engine.

While the second half is missing the analysis is refused (409, problem+json with the arrival
count and when the study counts as complete); a radiologist may force it, and that analysis
and its draft, PDF and SR say it is partial; once the study is stable it runs on every slice."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pynetdicom import AE

from appliance.config import Settings
from tests.ai_server import AIServer, Scripted, chat_completion, engine_settings
from tests.dicom_files import instance_files
from tests.integration.test_analysis import ANSWER
from tests.reporting import CT_SET
from tests.servers import free_port

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
STABLE_AGE_S = 6.0


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(ANSWER))) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: AIServer) -> Settings:
    return engine_settings(tmp_path, server, dicom_port=free_port(), stable_age_s=STABLE_AGE_S)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    from appliance.app import create_app

    return create_app(settings, with_ui=False, with_receiver=True)


def _halves() -> tuple[list[Path], list[Path]]:
    files = sorted(
        instance_files(CT_SET),
        key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber),
    )
    middle = len(files) // 2
    return files[:middle], files[middle:]


def _c_store(port: int, files: list[Path]) -> None:
    ae = AE(ae_title="CTSCANNER")
    for path in files:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title="RADIANT")
    assert assoc.is_established
    try:
        for path in files:
            status = assoc.send_c_store(path)
            assert int(status.Status) == 0
    finally:
        assoc.release()


def _wait(client: TestClient, headers: dict[str, str], analysis_id: str) -> dict[str, Any]:
    for _ in range(900):
        body: dict[str, Any] = client.get(f"/api/analysis/{analysis_id}", headers=headers).json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"analysis {analysis_id} did not finish")


def _images(server: AIServer) -> int:
    content = next(m for m in server.requests[-1].body["messages"] if m["role"] == "user")
    return sum(1 for part in content["content"] if part["type"] == "image_url")


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return " ".join(done.stdout.split())


def test_a_study_arriving_in_two_halves(
    client: TestClient,
    as_role: Headers,
    settings: Settings,
    server: AIServer,
    db: sqlite_utils.Database,
    tmp_path: Path,
) -> None:
    tech, rad = as_role("technician"), as_role("radiologist")
    first, second = _halves()
    _c_store(settings.dicom_port, first)
    (study_id,) = db.execute("SELECT id FROM studies").fetchone()
    request = {"study_id": study_id, "clinical_indication": "Headache after a fall."}

    refused = client.post("/api/analysis", json=request, headers=tech)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["instances"] == len(first)
    assert problem["complete_at"].endswith("Z")
    assert f"{len(first)} images so far" in problem["detail"]
    assert server.requests == []  # nothing reached the engine
    # Forcing it is a radiologist's decision.
    forced = {**request, "analyse_partial": True}
    assert client.post("/api/analysis", json=forced, headers=tech).status_code == 403

    accepted = client.post("/api/analysis", json=forced, headers=rad)
    assert accepted.status_code == 202, accepted.text
    partial = _wait(client, rad, accepted.json()["analysis_id"])
    assert partial["status"] in ("completed", "needs_review"), partial["error"]
    assert partial["partial"] is True and partial["instance_count"] == len(first)
    partial_images = _images(server)

    draft = client.post(
        "/api/reports",
        json={"study_id": study_id, "analysis_id": partial["id"]},
        headers=rad,
    )
    assert draft.status_code == 201, draft.text
    content = draft.json()["content"]
    assert content["provenance"]["partial_instances"] == len(first)
    note = (
        "PARTIAL ANALYSIS: the AI analysed the study while it was still arriving; it saw only "
        f"{len(first)} images"
    )
    assert note in content["limitations"]
    rid = draft.json()["id"]
    pdf = tmp_path / "partial.pdf"
    pdf.write_bytes(client.get(f"/api/export/report/{rid}/pdf", headers=rad).content)
    assert note in _run("pdftotext", str(pdf), "-")
    sr = tmp_path / "partial.dcm"
    sr.write_bytes(client.get(f"/api/export/report/{rid}/dicom-sr", headers=rad).content)
    assert note in _run("dsrdump", "+Pl", str(sr))

    # The second half: receiving again, refused again, then complete after the quiet period.
    _c_store(settings.dicom_port, second)
    again = client.post("/api/analysis", json=request, headers=tech)
    assert again.status_code == 409 and again.json()["instances"] == len(first) + len(second)
    for _ in range(300):
        study = client.get(f"/api/studies/{study_id}", headers=tech).json()
        if study["status"] == "stable":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the study never became stable")
    complete = client.post("/api/analysis", json=request, headers=tech)
    assert complete.status_code == 202, complete.text
    whole = _wait(client, tech, complete.json()["analysis_id"])
    assert whole["status"] in ("completed", "needs_review"), whole["error"]
    assert whole["partial"] is False and whole["instance_count"] == len(first) + len(second)
    # the CT series (the study also holds the findings SR series since the draft)
    (series_id,) = db.execute("SELECT id FROM series WHERE modality = 'CT'").fetchone()
    (shape,) = db.execute(
        "SELECT shape FROM volumes WHERE series_id = ? AND status = 'ready'", (series_id,)
    ).fetchone()
    assert _images(server) == json.loads(shape)[2] > partial_images  # every slice
