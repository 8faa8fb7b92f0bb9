"""Issue 13's acceptance answer (tests/flag_answer.py: an impression that cannot be hedged, a
confidence of 1.7, a unit "furlongs", a bare diagnosis) from the OpenAI-protocol test server:
each item's flag is stored, shown on the analysis and report screens (NiceGUI's simulated
user), and blocks signing (API: 409 problem document listing the undecided items; screen: the
sign dialog lists them and Sign stays disabled) until the radiologist decided on it. Once every
item is decided the report signs, and every signed surface says VERIFIED."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from nicegui import ui

from appliance.analysis import service as analysis_service
from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.config import Settings
from appliance.export import service as export
from appliance.reports import service as reports
from tests import flag_answer
from tests.ai_server import AIServer, Scripted, chat_completion
from tests.reporting import ingest_ct
from tests.unit.test_ui_screens import Screen, run
from ui import runtime

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
SIGN = {"ai_findings_reviewed": True}
RAD = Actor(name="radiologist-1", role="radiologist")


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(flag_answer.ANSWER))) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: AIServer) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", ai_engine="openai", ai_endpoint=server.url, ai_max_attempts=1
    )


def _wait(client: TestClient, headers: dict[str, str], analysis_id: str) -> dict[str, Any]:
    for _ in range(1200):
        body: dict[str, Any] = client.get(f"/api/analysis/{analysis_id}", headers=headers).json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.1)
    raise AssertionError("the analysis did not finish")


def _stored_flags(findings: list[Any], overall: list[Any]) -> dict[str, set[str]]:
    """Location (or "impression") -> the reasons of its stored flags."""
    found = {
        str(f["location"] if isinstance(f, dict) else f.location): {
            str(g["reason"] if isinstance(g, dict) else g.reason)
            for g in (f["flags"] if isinstance(f, dict) else f.flags)
        }
        for f in findings
    }
    found["impression"] = {str(g["reason"] if isinstance(g, dict) else g.reason) for g in overall}
    return found


def _expected_in(found: dict[str, set[str]]) -> None:
    for where, reason in flag_answer.EXPECTED_FLAGS.items():
        assert reason in found[where], (where, found[where])


def test_each_flag_is_stored_and_blocks_signing_through_the_api(
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
    _expected_in(_stored_flags(analysis["findings"], analysis["overall_flags"]))
    by_place = {f["location"]: f for f in analysis["findings"]}
    assert by_place[flag_answer.BARE]["description"] != flag_answer.BARE_DIAGNOSIS  # hedged
    assert by_place[flag_answer.CONFIDENCE]["confidence"] < 0.1  # 1.7 was not kept
    assert by_place[flag_answer.UNIT]["measurements"][0]["unit"] == ""

    made = client.post(
        "/api/reports", json={"study_id": ct.study_id, "analysis_id": analysis["id"]},
        headers=rad,
    )
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    content = made.json()["content"]
    _expected_in(_stored_flags(content["findings"], content["impression_flags"]))
    assert content["impression_review"] == "pending"
    ids = {f["location"]: f["id"] for f in content["findings"]}
    every = [f["id"] for f in content["findings"]] + ["impression"]

    # Each item is one decision; until the last one, signing answers 409 naming those left.
    decisions = [
        (ids[flag_answer.DEFINITIVE], "accepted"),
        (ids[flag_answer.BARE], "accepted"),
        (ids[flag_answer.CONFIDENCE], "rejected"),
        (ids[flag_answer.UNIT], "accepted"),
        ("impression", "accepted"),
    ]
    for done, (item, decision) in enumerate(decisions):
        refused = client.patch(f"/api/reports/{rid}/finalize", json=SIGN, headers=rad)
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert refused.headers["content-type"] == "application/problem+json"
        assert problem["title"] == "Flagged items await a decision"
        assert problem["undecided"] == every[done:]
        assert [i["id"] for i in problem["items"]] == every[done:]
        assert "Decide on each item the safety layer flagged" in problem["detail"]
        answer = client.post(
            f"/api/reports/{rid}/review", json={"item": item, "decision": decision},
            headers=rad,
        )
        assert answer.status_code == 200, answer.text
    assert reports.load(app.state.ctx.pool.get(), rid).status == "draft"  # nothing signed yet

    signed = client.patch(f"/api/reports/{rid}/finalize", json=SIGN, headers=rad)
    assert signed.status_code == 200, signed.text
    final = signed.json()
    assert final["verification_flag"] == "VERIFIED"
    assert [g["finding"]["id"] for g in final["content"]["rejected_findings"]] == [
        ids[flag_answer.CONFIDENCE]
    ]
    _signed_surfaces_verified(client, rad, rid, tmp_path)


def _signed_surfaces_verified(
    client: TestClient, headers: dict[str, str], rid: str, tmp_path: Path
) -> None:
    """JSON export, FHIR, SR and PDF all say the report is verified."""
    exported = client.get(f"/api/export/report/{rid}/json", headers=headers).json()
    assert exported["verification_flag"] == "VERIFIED"
    fhir = client.get(f"/api/export/report/{rid}/fhir", headers=headers).json()
    statuses = [
        e["resource"]["status"]
        for e in fhir["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    assert statuses == ["final"]
    sr_path = tmp_path / "signed.dcm"
    sr_path.write_bytes(client.get(f"/api/export/report/{rid}/dicom-sr", headers=headers).content)
    sr = pydicom.dcmread(sr_path)
    assert sr.VerificationFlag == "VERIFIED" and "VerifyingObserverSequence" in sr
    pdf_path = tmp_path / "signed.pdf"
    pdf_path.write_bytes(client.get(f"/api/export/report/{rid}/pdf", headers=headers).content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "UNVERIFIED" not in text and "Electronically signed by" in text


# ---- the screens ------------------------------------------------------------------------------


async def _until(check: Callable[[], bool], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


def test_each_flag_is_shown_and_signing_on_the_screen_waits_for_each_decision(
    tmp_path: Path, server: AIServer
) -> None:
    async def body(s: Screen) -> None:
        # The real job runner the composition root built, started as the appliance's lifespan
        # starts it: Run on the screen queues the analysis, the runner asks the test server.
        jobs = runtime.get().services.jobs
        jobs.start()
        try:
            await _screens(s)
        finally:
            jobs.stop()

    run(tmp_path, body, ai_engine="openai", ai_endpoint=server.url, ai_max_attempts=1)


async def _screens(s: Screen) -> None:
    ct = ingest_ct(s.ctx)
    await s.sign_in(s.add_user(Role.RADIOLOGIST))
    await s.see("Worklist")
    await s.user.open(f"/analysis/{ct.study_id}")
    await s.see(marker="run-analysis")
    s.user.find(marker="indication").type("Seizure.")
    (run_button,) = s.user.find(marker="run-analysis").elements
    await _until(lambda: isinstance(run_button, ui.button) and run_button.enabled, 30)
    s.user.find(marker="run-analysis").click()

    def finished() -> bool:
        rows = s.db.execute("SELECT status FROM analyses").fetchall()
        return bool(rows) and rows[0][0] not in ("queued", "running")

    await _until(finished)
    (analysis_id, status) = s.db.execute("SELECT id, status FROM analyses").fetchone()
    assert status == "needs_review"
    # Stored: each flag on its item (the analysis row and its findings).
    stored = analysis_service.get_analysis(s.db, analysis_id, RAD)
    _expected_in(_stored_flags(stored.findings, stored.overall_flags))
    # Shown on the analysis screen, each in plain words.
    for text in (
        f"Could not be hedged: names a disorder inside quoted words (\u201c{flag_answer.QUOTED}"
        "\u201d). Decide before signing.",
        f"Reworded by the safety layer: \u201c{flag_answer.BARE_DIAGNOSIS}",
        "Confidence out of range (1.7), replaced by",
        "Unit not recognised (\u201cfurlongs\u201d): the number is kept without a unit.",
    ):
        await s.user.should_see(text, retries=300)

    # The draft, made on the report screen: the same flags beside their items, each pending.
    await s.user.open(f"/report/{ct.study_id}")
    await s.see(marker="create-report")
    s.user.find(marker="create-report").click()
    await s.see(marker="impression-pending")
    report_id = reports.latest_for_study(s.db, ct.study_id)
    assert report_id is not None
    content = reports.load(s.db, report_id).content
    ids = {str(f.location): f.id for f in content.findings}
    for finding in content.findings:
        await s.see(marker=f"pending-{finding.id}")
        await s.see(marker=f"flag-{finding.id}")
    await s.see("Unit not recognised (\u201cfurlongs\u201d): the number is kept without a unit.")
    await s.see("Flagged items awaiting your decision: 5.")

    # Sign: the dialog lists every undecided item and Sign stays disabled.
    s.user.find(marker="report-finalize").click()
    await s.see(marker="undecided-list")
    for item in [*ids.values(), "impression"]:
        await s.see(marker=f"undecided-{item}")
    await s.see(f"Finding {ids[flag_answer.UNIT]} ({flag_answer.UNIT}): unit not recognised")
    await s.see(f"Finding {ids[flag_answer.CONFIDENCE]} ({flag_answer.CONFIDENCE}): confidence"
                " out of range")
    await s.see(f"Finding {ids[flag_answer.BARE]} ({flag_answer.BARE}): a bare diagnosis"
                " reworded by the safety layer")
    await s.see("The impression: a quoted diagnosis that could not be hedged")
    s.user.find(marker="confirm-reviewed").click()
    (sign,) = s.user.find(marker="confirm-sign").elements
    assert isinstance(sign, ui.button) and not sign.enabled
    s.user.find(marker="confirm-sign").click()
    assert reports.load(s.db, report_id).status == "draft"

    # Decide on each item; the count goes down with each new version.
    steps = [
        ("impression-accept", 4),
        (f"accept-{ids[flag_answer.DEFINITIVE]}", 3),
        (f"accept-{ids[flag_answer.BARE]}", 2),
        (f"reject-{ids[flag_answer.CONFIDENCE]}", 1),
    ]
    for version, (marker, left) in enumerate(steps, start=2):
        s.user.find(marker=marker).click()
        await s.see(f"Version {version}")
        await s.see(f"Flagged items awaiting your decision: {left}.")
    s.user.find(marker=f"accept-{ids[flag_answer.UNIT]}").click()
    await s.see("Version 6")
    await s.user.should_not_see(marker="undecided-count")
    s.user.find(marker="report-finalize").click()
    await s.user.should_not_see(marker="undecided-list")
    s.user.find(marker="confirm-reviewed").click()
    s.user.find(marker="confirm-sign").click()
    await s.see(marker="verified-banner")
    await s.see("AI suggestions were reviewed.")
    await s.user.should_not_see("AI decision support only")
    signed = reports.load(s.db, report_id)
    assert signed.status == "final"
    assert [g.finding.id for g in signed.content.rejected_findings] == [ids[flag_answer.CONFIDENCE]]
    # The signed surfaces, as the screen's exports produce them.
    actor = RAD
    assert json.loads(export.export_json(s.ctx, report_id, actor).model_dump_json())[
        "verification_flag"
    ] == "VERIFIED"
    sr_bytes, _ = export.export_sr(s.ctx, report_id, actor)
    sr_path = s.settings.data_dir / "signed-sr.dcm"
    sr_path.write_bytes(sr_bytes)
    assert pydicom.dcmread(sr_path).VerificationFlag == "VERIFIED"
    bundle = export.export_fhir(s.ctx, report_id, actor)
    assert [
        e["resource"]["status"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    ] == ["final"]
