"""Sending a report to a PACS: dcmtk's storescp on 127.0.0.1 receives the SR and the
Encapsulated PDF; with the peer down the send is queued and the app's retrier delivers it once
the peer is up."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.config import Settings
from appliance.context import AppContext
from appliance.export.encapsulated import ENCAPSULATED_PDF_STORAGE
from tests.reporting import ingest_ct, insert_analysis
from tests.servers import free_port

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture
def pacs_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, pacs_port: int) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        dicom_peers=f"PACS@127.0.0.1:{pacs_port}",
        pacs_timeout_s=5,
        pacs_retry_base_s=0.2,
        pacs_retry_max_s=1,
        pacs_retry_poll_s=0.1,
    )


@contextmanager
def storescp(port: int, out_dir: Path) -> Iterator[None]:
    """dcmtk storescp as the PACS (AE PACS), accepting every transfer syntax."""
    out_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["storescp", "+xa", "-aet", "PACS", "-od", str(out_dir), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            echo = subprocess.run(
                ["echoscu", "-aec", "PACS", "127.0.0.1", str(port)],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if echo.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"storescp on {port} never answered")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def report_id(app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database) -> str:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    analysis = insert_analysis(db, ct)
    rad = as_role("radiologist")
    response = client.post(
        "/api/reports", json={"study_id": ct.study_id, "analysis_id": analysis}, headers=rad
    )
    assert response.status_code == 201, response.text
    rid = str(response.json()["id"])
    signed = client.patch(
        f"/api/reports/{rid}/finalize", json={"ai_findings_reviewed": True}, headers=rad
    )
    assert signed.status_code == 200
    return rid


def _received(out_dir: Path) -> dict[str, pydicom.Dataset]:
    found = {}
    for path in sorted(out_dir.iterdir()):
        ds = pydicom.dcmread(path)
        found[str(ds.SOPClassUID)] = ds
    return found


def _queue(db: sqlite_utils.Database, queue_id: int) -> tuple[str, int, str | None]:
    row = db.execute(
        "SELECT status, attempts, last_error FROM sync_queue WHERE id = ?", (queue_id,)
    ).fetchone()
    return str(row[0]), int(row[1]), row[2]


def test_send_stores_the_sr_and_the_pdf(
    client: TestClient,
    as_role: Headers,
    report_id: str,
    pacs_port: int,
    tmp_path: Path,
    db: sqlite_utils.Database,
) -> None:
    out = tmp_path / "pacs"
    with storescp(pacs_port, out):
        response = client.post(
            f"/api/export/report/{report_id}/send",
            json={"peer": "PACS"},
            headers=as_role("technician"),
        )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "sent" and result["attempts"] == 1
    received = _received(out)
    assert set(received) == {COMPREHENSIVE_3D_SR, ENCAPSULATED_PDF_STORAGE}
    sr, document = received[COMPREHENSIVE_3D_SR], received[ENCAPSULATED_PDF_STORAGE]
    assert sr.SOPInstanceUID == result["sr_sop_instance_uid"]
    assert sr.VerificationFlag == "VERIFIED"
    assert document.SOPInstanceUID == result["pdf_sop_instance_uid"]
    assert document.EncapsulatedDocument.startswith(b"%PDF")
    assert document.StudyInstanceUID == sr.StudyInstanceUID
    assert _queue(db, result["queue_id"]) == ("done", 1, None)
    outcome = db.execute(
        "SELECT outcome FROM audit_log WHERE action = 'export.pacs_send' ORDER BY id DESC"
    ).fetchone()[0]
    assert outcome == "success"


def test_peer_down_queues_and_the_retrier_delivers_once_it_is_up(
    client: TestClient,
    as_role: Headers,
    report_id: str,
    pacs_port: int,
    tmp_path: Path,
    db: sqlite_utils.Database,
) -> None:
    response = client.post(
        f"/api/export/report/{report_id}/send", json={"peer": "PACS"}, headers=as_role("admin")
    )
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["status"] == "queued" and result["attempts"] == 1
    assert "PACS@127.0.0.1" in result["last_error"]
    status, attempts, error = _queue(db, result["queue_id"])
    assert status in ("pending", "uploading") and error

    out = tmp_path / "pacs"
    with storescp(pacs_port, out):
        deadline = time.monotonic() + 60
        while _queue(db, result["queue_id"])[0] != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
        status, attempts, error = _queue(db, result["queue_id"])
    assert status == "done", error
    assert attempts >= 2 and error is None
    assert set(_received(out)) == {COMPREHENSIVE_3D_SR, ENCAPSULATED_PDF_STORAGE}
    outcomes = [
        r[0]
        for r in db.execute(
            "SELECT outcome FROM audit_log WHERE action = 'export.pacs_send' ORDER BY id"
        )
    ]
    assert outcomes[0] == "queued" and outcomes[-1] == "success"


def test_unknown_peer_is_422(client: TestClient, as_role: Headers, report_id: str) -> None:
    response = client.post(
        f"/api/export/report/{report_id}/send", json={"peer": "NOWHERE"}, headers=as_role("admin")
    )
    assert response.status_code == 422
    assert "NOWHERE" in response.json()["detail"]
