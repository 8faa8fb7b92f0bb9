"""A report whose generated text is French, through every export: the PDF (poppler's
pdftotext), the DICOM SR (dicom3tools' dciodvfy, dcmtk's dsrdump; TID 1204 says fr-FR) and the
FHIR bundle (fhir.resources) carry the French texts and none of the English sentences of the
report generator; the model's own text is kept as written. The draft's report language is
changed through the API as a new, audited version; only an editor may change it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from ai.safety import DISCLAIMER
from appliance.context import AppContext
from appliance.reports import language
from tests.reporting import FINDINGS, ingest_ct, insert_analysis

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]


def _english_pieces() -> list[str]:
    english, french = language.catalog("en"), language.catalog("fr")
    pieces = {"None."}
    for key, text in english.items():
        for part in re.split(r"\{[^}]*\}", text):
            piece = part.strip(" .,:;()[]")
            if len(re.findall(r"[A-Za-z]+", piece)) >= 2 and piece not in french[key]:
                pieces.add(piece)
    return sorted(pieces)


def _english_in(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [p for p in _english_pieces() if p in flat]


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.decode("utf-8", "replace").split())


@pytest.fixture
def french(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> tuple[str, dict[str, str]]:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    rad = as_role("radiologist")
    analysis = insert_analysis(db, ct)
    body = {"study_id": ct.study_id, "analysis_id": analysis, "language": "fr"}
    response = client.post("/api/reports", json=body, headers=rad)
    assert response.status_code == 201, response.text
    content = response.json()["content"]
    assert content["language"] == "fr"
    assert content["technique"].startswith("TDM de la tête : 1 série, 28 images.")
    assert content["disclaimer"] == language.text("fr", "disclaimer")
    return response.json()["id"], rad


def test_french_report_through_every_export(
    client: TestClient, french: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    report_id, rad = french
    signed = client.patch(
        f"/api/reports/{report_id}/finalize", json={"ai_findings_reviewed": True}, headers=rad
    )
    assert signed.status_code == 200, signed.text
    notice = signed.json()["verification"]["notice"]
    assert notice.startswith("Signé par ") and "VERIFIED" in notice

    pdf = tmp_path / "fr.pdf"
    pdf.write_bytes(client.get(f"/api/export/report/{report_id}/pdf", headers=rad).content)
    text = _run("pdftotext", "-enc", "UTF-8", str(pdf), "-")
    assert _english_in(text) == []
    for expected in ("Compte rendu de radiologie", "Indication clinique", "Comparaison Néant.",
                     "Limites", "Signé électroniquement par", "Page 1 sur", "Résultats"):
        assert expected in text, expected
    assert str(FINDINGS[0]["description"])[:30] in text  # the model's text, as written

    sr = tmp_path / "fr.dcm"
    sr.write_bytes(client.get(f"/api/export/report/{report_id}/dicom-sr", headers=rad).content)
    checked = subprocess.run(["dciodvfy", str(sr)], capture_output=True, text=True, timeout=120)
    lines = (checked.stdout + checked.stderr).splitlines()
    assert [line for line in lines if line.startswith("Error")] == []
    dump = _run("dsrdump", "+Pl", "+U8", str(sr))
    assert '(fr-FR,RFC5646,"French (France)")' in dump
    assert "Limites : " in dump and "Confiance de l\u2019IA" in dump
    assert _english_in(dump) == []

    response = client.get(f"/api/export/report/{report_id}/fhir", headers=rad)
    bundle: dict[str, Any] = response.json()
    Bundle.model_validate(bundle)
    resources = [e["resource"] for e in bundle["entry"]]
    (diagnostic,) = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    assert diagnostic["language"] == "fr"
    assert diagnostic["presentedForm"][0]["title"].startswith("Compte rendu de radiologie")
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert observations and all(o["language"] == "fr" for o in observations)
    assert _english_in(json.dumps(bundle, ensure_ascii=False)) == []


def test_the_report_language_changes_per_draft_audited_and_for_editors_only(
    client: TestClient,
    french: tuple[str, dict[str, str]],
    as_role: Headers,
    db: sqlite_utils.Database,
) -> None:
    report_id, rad = french
    url = f"/api/reports/{report_id}"
    refused = client.patch(url, json={"language": "en"}, headers=as_role("technician"))
    assert refused.status_code == 403
    assert client.patch(url, json={"language": "de"}, headers=rad).status_code == 422
    changed = client.patch(url, json={"language": "en", "expected_version": 1}, headers=rad)
    assert changed.status_code == 200, changed.text
    content = changed.json()["content"]
    assert changed.json()["current_version"] == 2 and content["language"] == "en"
    assert content["technique"].startswith("CT head: 1 series, 28 images.")
    assert content["comparison"] == "None." and content["disclaimer"] == DISCLAIMER
    (detail,) = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'report.update' AND object_id = ?"
        " AND outcome = 'success'",
        (report_id,),
    ).fetchone()
    assert json.loads(detail)["sections"] == ["language"]
    versions = client.get(f"{url}/versions", headers=rad).json()
    assert versions["chain_ok"] is True
    assert {"path": "language", "change": "changed"} in versions["versions"][-1]["changes"]
