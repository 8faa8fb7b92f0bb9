"""Online mode: nothing identifying leaves for the cloud engine, and what left is recorded.

A real CR Image Storage file of a named patient is ingested and analysed in online mode against
the recording OpenAI-protocol server (tests/ai_server.py). The clinical indication carries the
patient's name (other order, other case, no accents), MRN, birth date in three formats and the
accession number; the raw request body, every text part and every base64-decoded part are
searched for each known value. A radiograph whose header says BurnedInAnnotation YES is refused
for the cloud path (audited) unless the site allows it. Offline, the indication goes as typed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from appliance.audit.models import Actor
from appliance.config import Mode, Settings
from tests.ai_server import CXR, AIServer, Scripted, chat_completion
from tests.reporting import settle

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
ACTOR = Actor.system("test")

FAMILY, GIVEN = "Dupont-Lefèvre", "Hélène"
MRN, BIRTH, ACCESSION = "MRN-0042-77", "19610312", "ACC2026X991"
INDICATION = (
    "helene DUPONT-LEFEVRE, born 12/03/1961 (1961-03-12, 12 March 1961), MRN-0042-77, "
    "acc ACC2026X991: cough and fever for 3 days."
)
ANSWER = (
    '```json\n{"findings": [{"description": "Right upper lobe pneumonia.", '
    '"confidence": 0.8}], "overall_impression": "Pneumonia."}\n```'
)


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(ANSWER))) as running:
        yield running


@pytest.fixture
def allow_burned_in() -> bool:
    return False


@pytest.fixture
def mode() -> Mode:
    return Mode.ONLINE


@pytest.fixture
def settings(tmp_path: Path, server: AIServer, allow_burned_in: bool, mode: Mode) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        mode=mode,
        ai_engine="openai",
        ai_endpoint=server.url,
        ai_online_endpoint=server.url,
        ai_online_fallback=False,
        ai_cloud_allow_burned_in=allow_burned_in,
        ai_max_attempts=1,
        ai_timeout_s=60,
    )


def _radiograph(*, burned_in: bool) -> bytes:
    ds = pydicom.dcmread(CXR)
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.PatientName = f"{FAMILY}^{GIVEN}"
    ds.PatientID = MRN
    ds.PatientBirthDate = BIRTH
    ds.AccessionNumber = ACCESSION
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _study(app: FastAPI, data: bytes) -> str:
    ctx = app.state.ctx
    result = ctx.ingestor.ingest(data, source="test", actor=ACTOR)
    assert result.outcome == "stored", result
    settle(ctx.pool.get())  # the whole study has arrived
    uid = str(pydicom.dcmread(io.BytesIO(data)).StudyInstanceUID)
    row = ctx.pool.get().execute("SELECT id FROM studies WHERE study_uid = ?", (uid,)).fetchone()
    return str(row[0])


def _run(client: TestClient, headers: dict[str, str], study_id: str) -> dict[str, Any]:
    response = client.post(
        "/api/analysis",
        json={"study_id": study_id, "clinical_indication": INDICATION, "analysis_type": "primary"},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    for _ in range(600):
        got = client.get(f"/api/analysis/{response.json()['analysis_id']}", headers=headers)
        body: dict[str, Any] = got.json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.1)
    raise AssertionError("analysis did not finish")


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _identifiers() -> list[str]:
    names = [FAMILY, GIVEN, *FAMILY.split("-")]
    dates = [BIRTH, "1961-03-12", "12/03/1961", "12 march 1961"]
    return [_plain(value) for value in [*names, MRN, ACCESSION, *dates]]


def _texts_sent(body: Any) -> list[str]:
    """Every string in the JSON body, and the base64 payload of every data URL, decoded."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            found.append(node)
            if node.startswith("data:") and ";base64," in node:
                raw = base64.b64decode(node.split(",", 1)[1])
                found.append(raw.decode("latin-1"))

    walk(body)
    return found


def test_cloud_request_carries_none_of_the_patients_identifiers(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer, db: sqlite_utils.Database
) -> None:
    study_id = _study(app, _radiograph(burned_in=False))
    body = _run(client, as_role("technician"), study_id)
    assert body["status"] in ("completed", "needs_review"), body["error"]

    (request,) = server.requests
    texts = [_plain(request.raw.decode("utf-8")), *(_plain(t) for t in _texts_sent(request.body))]
    for value in _identifiers():
        assert not any(value in text for text in texts), value
    assert "cough and fever for 3 days" in _plain(request.raw.decode("utf-8"))
    assert "[name]" in request.raw.decode("utf-8")

    # Recorded: the hash of exactly the bytes received, the image count, the scrub actions.
    row = db.execute(
        "SELECT request_sha256, request_image_count, request_scrub FROM analyses WHERE id = ?",
        (body["id"],),
    ).fetchone()
    assert row[0] == hashlib.sha256(request.raw).hexdigest()
    assert row[1] == 1
    actions = json.loads(row[2])
    assert {a.split(":")[0] for a in actions} == {"name", "mrn", "accession", "birth_date"}
    (detail_text,) = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'analysis.model_call' AND object_id = ?",
        (body["id"],),
    ).fetchone()
    detail = json.loads(detail_text)
    assert detail["cloud"] is True and detail["request_sha256"] == row[0]
    assert detail["scrub"] == actions
    assert not any(value in _plain(detail_text) for value in _identifiers())
    # What the screens show went through the hedging classifier.
    assert body["findings"][0]["description"] == (
        "Findings suggestive of right upper lobe pneumonia."
    )
    assert body["overall_impression"] == "Findings suggestive of pneumonia."


def test_burned_in_radiograph_is_refused_for_the_cloud(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer, db: sqlite_utils.Database
) -> None:
    study_id = _study(app, _radiograph(burned_in=True))
    body = _run(client, as_role("technician"), study_id)
    assert body["status"] == "failed"
    assert "burned-in annotation" in body["error"]
    assert "RADIANT_AI_CLOUD_ALLOW_BURNED_IN" in body["error"]
    assert server.requests == []  # nothing left the box
    (outcome, detail) = db.execute(
        "SELECT outcome, detail FROM audit_log WHERE action = 'analysis.cloud_burned_in'"
    ).fetchone()
    assert outcome == "denied" and json.loads(detail)["allowed"] is False


@pytest.mark.parametrize("allow_burned_in", [True])
def test_a_site_may_allow_burned_in_radiographs_audited(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer, db: sqlite_utils.Database
) -> None:
    study_id = _study(app, _radiograph(burned_in=True))
    body = _run(client, as_role("technician"), study_id)
    assert body["status"] in ("completed", "needs_review"), body["error"]
    assert len(server.requests) == 1
    (outcome,) = db.execute(
        "SELECT outcome FROM audit_log WHERE action = 'analysis.cloud_burned_in'"
    ).fetchone()
    assert outcome == "success"


@pytest.mark.parametrize("mode", [Mode.OFFLINE])
def test_local_engines_get_the_indication_as_typed(
    app: FastAPI, client: TestClient, as_role: Headers, server: AIServer, db: sqlite_utils.Database
) -> None:
    study_id = _study(app, _radiograph(burned_in=True))
    body = _run(client, as_role("technician"), study_id)
    assert body["status"] in ("completed", "needs_review"), body["error"]
    (request,) = server.requests
    assert INDICATION in json.dumps(request.body, ensure_ascii=False)
    row = db.execute(
        "SELECT request_sha256, request_scrub FROM analyses WHERE id = ?", (body["id"],)
    ).fetchone()
    assert row == (None, None)
