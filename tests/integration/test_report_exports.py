"""Report exports checked by independent tools: the SR and the encapsulated PDF by dicom3tools'
``dciodvfy`` and dcmtk's ``dsrdump`` (and read back with highdicom), the PDF by poppler's
``pdftotext``/``pdffonts``/``pdfinfo``, the FHIR bundle by the ``fhir.resources`` models."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from ai.safety import DISCLAIMER
from appliance.context import AppContext
from appliance.export import pdf as pdf_export
from appliance.export import service as export
from appliance.export.pdf import WATERMARK
from appliance.reports import service as reports
from tests.reporting import FINDINGS, ingest_ct, insert_analysis

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
FIRST, LAST = "Zoë Ελένη", "Дмитриева-Nguyễn"
#: dciodvfy's warnings for the SR of the test CT: all about the source study, whose identity was
#: removed by its publisher (PatientName "REMOVED", no StudyDate/StudyTime/StudyID).
SOURCE_WARNINGS = {
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Date",
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Time",
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study ID",
    "Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = "
    "<REMOVED> - Retired Person Name form",
}


@dataclass
class Reported:
    ctx: AppContext
    report_id: str
    study_id: str
    rad: dict[str, str]
    viewer: dict[str, str]


@pytest.fixture
def reported(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> Reported:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    rad = as_role("radiologist")
    renamed = client.patch(
        f"/api/patients/{ct.patient_id}", json={"first_name": FIRST, "last_name": LAST}, headers=rad
    )
    assert renamed.status_code == 200, renamed.text
    analysis = insert_analysis(db, ct)
    response = client.post(
        "/api/reports", json={"study_id": ct.study_id, "analysis_id": analysis}, headers=rad
    )
    assert response.status_code == 201, response.text
    return Reported(ctx, response.json()["id"], ct.study_id, rad, as_role("viewer"))


def _finalize(client: TestClient, r: Reported) -> None:
    response = client.patch(
        f"/api/reports/{r.report_id}/finalize", json={"ai_findings_reviewed": True}, headers=r.rad
    )
    assert response.status_code == 200, response.text


def _amend(client: TestClient, r: Reported) -> None:
    response = client.patch(
        f"/api/reports/{r.report_id}",
        json={"addendum": "Reviewed with a colleague."},
        headers=r.rad,
    )
    assert response.status_code == 200, response.text


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _pages(path: Path) -> list[str]:
    info = _run("pdfinfo", str(path)).stdout
    count = int(re.search(r"^Pages:\s+(\d+)", info, re.M)[1])  # type: ignore[index]
    return [
        _flat(_run("pdftotext", "-f", str(n), "-l", str(n), str(path), "-").stdout)
        for n in range(1, count + 1)
    ]


def _get_pdf(client: TestClient, r: Reported, tmp_path: Path, name: str) -> Path:
    response = client.get(f"/api/export/report/{r.report_id}/pdf", headers=r.viewer)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    path = tmp_path / name
    path.write_bytes(response.content)
    return path


def test_pdf_watermarked_until_signed_with_every_page_disclaimed_and_unicode_names(
    client: TestClient, reported: Reported, tmp_path: Path
) -> None:
    draft = _get_pdf(client, reported, tmp_path, "draft.pdf")
    pages = _pages(draft)
    assert len(pages) >= 2
    whole = " ".join(pages)
    name = f"{FIRST} {LAST}"
    for number, text in enumerate(pages, 1):
        assert WATERMARK in text, number
        assert _flat(DISCLAIMER) in text, number
        assert name in text, number  # the running patient line
        assert f"Page {number} of {len(pages)}" in text
    for finding in FINDINGS:
        assert _flat(str(finding["description"])) in whole
    assert "MRN QMNx85rKkkg" in whole and "12.4 mm" in whole and "58 HU" in whole
    assert "Not signed." in whole
    fonts = _run("pdffonts", str(draft)).stdout
    embedded = [line for line in fonts.splitlines() if "DejaVuSans" in line]
    assert embedded and all(" yes yes yes " in line for line in embedded), fonts
    assert "Helvetica" not in fonts  # nothing falls back to an unembedded Latin-1 font

    _finalize(client, reported)
    final = _get_pdf(client, reported, tmp_path, "final.pdf")
    pages = _pages(final)
    for text in pages:
        assert WATERMARK not in text
        assert "UNVERIFIED" not in text
        assert "Signed by radiologist-user at" in text  # every page's footer
        assert "AI suggestions were reviewed" in text
    assert "Electronically signed by radiologist-user" in " ".join(pages)


def test_pdf_page_size_letter(reported: Reported, tmp_path: Path) -> None:
    db = reported.ctx.pool.get()
    stored = reports.load(db, reported.report_id)
    data = pdf_export.PdfInput(
        content=stored.content,
        status=stored.status,
        version=1,
        report_id=reported.report_id,
        digest=str(stored.version["hash"]),
        signer_name=None,
        signed_at=None,
        page_size="LETTER",
    )
    path = tmp_path / "letter.pdf"
    path.write_bytes(pdf_export.render(data, lambda _finding: None))
    assert "(letter)" in _run("pdfinfo", str(path)).stdout


def _dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    result = _run("dciodvfy", str(path))
    lines = (result.stdout + result.stderr).splitlines()
    return (
        [line for line in lines if line.startswith("Error")],
        [line for line in lines if line.startswith("Warning")],
    )


def _get_sr(client: TestClient, url: str, headers: dict[str, str], path: Path) -> Path:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    path.write_bytes(response.content)
    return path


def test_sr_validates_and_reads_back(
    client: TestClient, reported: Reported, tmp_path: Path
) -> None:
    url = f"/api/export/report/{reported.report_id}/dicom-sr"
    draft = hd.sr.srread(_get_sr(client, url, reported.viewer, tmp_path / "draft.dcm"))
    assert draft.VerificationFlag == "UNVERIFIED" and draft.PreliminaryFlag == "PRELIMINARY"
    assert "VerifyingObserverSequence" not in draft

    _finalize(client, reported)
    path = _get_sr(client, url, reported.viewer, tmp_path / "final.dcm")
    errors, warnings = _dciodvfy(path)
    assert errors == []
    assert set(warnings) == SOURCE_WARNINGS

    dump = _run("dsrdump", "+Pl", str(path))
    assert dump.returncode == 0, dump.stderr
    for finding in FINDINGS:
        assert str(finding["description"]) in dump.stdout
    for expected in (
        'NUM:(,,"Long axis")="12.4" (mm,UCUM,"millimeter")',
        'NUM:(,,"Mean Attenuation Coefficient")="58.0" ([hnsf\'U],UCUM,"Hounsfield unit")',
        'CODE:(,,"Finding")=(50960005,SCT,"Hemorrhage")',
        'CODE:(,,"Finding Site")=(83251001,SCT,"Frontal lobe")',
        'CODE:(,,"Certainty of Finding")=(255508009,SCT,"Medium")',
        'CODE:(,,"Finding")=(404684003,SCT,"Finding")',  # the generic code, text alongside
        'SCOORD:(,,"Image Region")=(POLYLINE',
        "Verification Flag   : VERIFIED",
    ):
        assert expected in dump.stdout, expected

    sr = hd.sr.srread(path)
    source = pydicom.dcmread(
        reported.ctx.store.path(
            reported.ctx.pool.get()
            .execute("SELECT storage_key FROM instances LIMIT 1")
            .fetchone()[0]
        ),
        stop_before_pixels=True,
    )
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.PatientID == source.PatientID and sr.Modality == "SR"
    assert sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
    assert sr.VerifyingObserverSequence[0].VerifyingObserverName.family_name == "radiologist-user"
    equipment = [e.Manufacturer for e in sr.ContributingEquipmentSequence]
    assert "RadiantAI" in equipment
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_image_measurement_groups() + report.get_planar_roi_measurement_groups()
    assert len(groups) == 3
    ids = sorted(g.tracking_identifier for g in groups)
    assert ids == ["Finding 1 (f1)", "Finding 2 (f2)", "Finding 3 (f3)"]
    roi = report.get_planar_roi_measurement_groups()[0]
    assert roi.reference_type == hd.sr.CodedConcept("111030", "DCM", "Image Region")
    assert [m.value for m in roi.get_measurements()] == [12.4, 8.1, 58.0]
    observers = report.get_observer_contexts()
    assert {str(o.observer_type.meaning) for o in observers} == {"Person", "Device"}

    # The same version exports to the same instance; the study endpoint gives this report.
    again = _get_sr(
        client,
        f"/api/export/study/{reported.study_id}/dicom-sr",
        reported.viewer,
        tmp_path / "study.dcm",
    )
    assert pydicom.dcmread(again).SOPInstanceUID == sr.SOPInstanceUID


def test_encapsulated_pdf_instance_validates(reported: Reported, tmp_path: Path) -> None:
    db = reported.ctx.pool.get()
    stored = reports.load(db, reported.report_id)
    document = export.render_pdf(reported.ctx, db, stored)
    ds = export.pdf_dataset(reported.ctx, db, stored, document)
    path = tmp_path / "pdf.dcm"
    path.write_bytes(export.part10(ds))
    errors, warnings = _dciodvfy(path)
    assert errors == []
    assert set(warnings) <= SOURCE_WARNINGS
    back = pydicom.dcmread(path)
    assert back.EncapsulatedDocument[: back.EncapsulatedDocumentLength] == document
    assert back.StudyInstanceUID == stored.content.header.study_uid


def _bundle(client: TestClient, r: Reported) -> dict[str, Any]:
    response = client.get(f"/api/export/report/{r.report_id}/fhir", headers=r.viewer)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    data: dict[str, Any] = response.json()
    Bundle.model_validate(data)  # raises on any invalid element
    return data


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_fhir_bundle_validates_with_statuses_across_the_workflow(
    client: TestClient, reported: Reported
) -> None:
    draft = _bundle(client, reported)
    (diagnostic,) = _resources(draft, "DiagnosticReport")
    assert diagnostic["status"] == "preliminary"
    assert "resultsInterpreter" not in diagnostic
    assert diagnostic["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "24725-4",
        "display": "CT Head",
    }
    form = diagnostic["presentedForm"][0]
    assert form["contentType"] == "application/pdf" and form["size"] > 1000
    (study,) = _resources(draft, "ImagingStudy")
    uid = reported.ctx.pool.get().execute("SELECT study_uid FROM studies").fetchone()[0]
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}
    assert study["series"][0]["modality"]["code"] == "CT"
    # the 28 CT images and the draft's findings SR, stored in the study when the draft was made
    assert [s["modality"]["code"] for s in study["series"]] == ["CT", "SR"]
    assert study["numberOfInstances"] == 29
    (patient,) = _resources(draft, "Patient")
    assert patient["name"][0]["family"] == LAST and patient["name"][0]["given"] == [FIRST]
    observations = _resources(draft, "Observation")
    assert [o["valueString"] for o in observations] == [f["description"] for f in FINDINGS]
    assert {o["status"] for o in observations} == {"preliminary"}
    quantity = observations[0]["component"][0]["valueQuantity"]
    assert quantity == {
        "value": 12.4,
        "unit": "mm",
        "system": "http://unitsofmeasure.org",
        "code": "mm",
    }
    refs = {f"urn:uuid:{r['id']}" for e in draft["entry"] for r in [e["resource"]]}
    assert {r["reference"] for r in diagnostic["result"]} <= refs

    _finalize(client, reported)
    final = _bundle(client, reported)
    (diagnostic,) = _resources(final, "DiagnosticReport")
    assert diagnostic["status"] == "final"
    interpreter = diagnostic["resultsInterpreter"][0]["reference"]
    (practitioner,) = _resources(final, "Practitioner")
    assert interpreter == f"urn:uuid:{practitioner['id']}"
    assert {o["status"] for o in _resources(final, "Observation")} == {"final"}

    _amend(client, reported)
    amended = _bundle(client, reported)
    (diagnostic,) = _resources(amended, "DiagnosticReport")
    assert diagnostic["status"] == "amended"
    assert "Reviewed with a colleague." in diagnostic["conclusion"]


def test_json_export_is_the_published_schema(client: TestClient, reported: Reported) -> None:
    _finalize(client, reported)
    response = client.get(f"/api/export/report/{reported.report_id}/json", headers=reported.viewer)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == "radiantai.report" and body["format_version"] == 1
    assert body["status"] == "final" and body["verification_flag"] == "VERIFIED"
    assert body["chain_ok"] is True
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert body["versions"][1]["prev_hash"] == body["versions"][0]["hash"]
    assert body["provenance"]["model_id"] == "google/medgemma-1.5-4b-it"
    assert body["provenance"]["prompt_version"] == "3"
    assert body["signature"]["signer_name"] == "radiologist-user"
    assert len(body["content"]["findings"]) == 3
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/api/export/report/{report_id}/json"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ReportExport")
    assert "versions" in schema["components"]["schemas"]["ReportExport"]["properties"]


def test_exports_are_audited_and_missing_reports_are_404(
    client: TestClient, reported: Reported, db: sqlite_utils.Database
) -> None:
    for kind in ("pdf", "json", "dicom-sr", "fhir"):
        url = f"/api/export/report/{reported.report_id}/{kind}"
        assert client.get(url, headers=reported.viewer).status_code == 200
        missing = client.get(f"/api/export/report/nope/{kind}", headers=reported.viewer)
        assert missing.status_code == 404
    actions = {
        (a, o)
        for a, o in db.execute("SELECT action, outcome FROM audit_log WHERE action LIKE 'export.%'")
    }
    for action in ("export.pdf", "export.json", "export.dicom_sr", "export.fhir"):
        assert (action, "success") in actions and (action, "not_found") in actions
    sizes = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'export.pdf' AND outcome = 'success'"
    ).fetchone()[0]
    assert FIRST not in sizes and "hash" in sizes
    assert client.get("/api/export/study/nope/dicom-sr", headers=reported.viewer).status_code == 404


def test_signing_makes_every_surface_say_verified_and_an_addendum_amended(
    client: TestClient, reported: Reported, tmp_path: Path
) -> None:
    """One verification model (UNVERIFIED -> VERIFIED -> AMENDED) on the API answer, the PDF,
    the SR (Verification Flag and Verifying Observer, PS3.3 C.17.2), FHIR and the JSON export;
    the screen is checked in tests/unit/test_ui_screens.py."""
    rid, viewer = reported.report_id, reported.viewer
    draft = client.get(f"/api/reports/{rid}", headers=viewer).json()
    assert draft["verification"] == {
        "state": "UNVERIFIED",
        "verifier_name": None,
        "verified_at": None,
        "notice": DISCLAIMER,
    }

    _finalize(client, reported)
    signed = client.get(f"/api/reports/{rid}", headers=viewer).json()
    verification = signed["verification"]
    assert verification["state"] == "VERIFIED" and signed["verification_flag"] == "VERIFIED"
    assert verification["verifier_name"] == "radiologist-user"
    assert verification["verified_at"] == signed["signed_at"]
    assert "UNVERIFIED" not in verification["notice"]
    assert verification["notice"].startswith("Signed by radiologist-user at ")

    whole = " ".join(_pages(_get_pdf(client, reported, tmp_path, "signed.pdf")))
    assert "UNVERIFIED" not in whole and WATERMARK not in whole
    assert "Signed by radiologist-user at" in whole

    url = f"/api/export/report/{rid}/dicom-sr"
    path = _get_sr(client, url, viewer, tmp_path / "signed.dcm")
    errors, _ = _dciodvfy(path)
    assert errors == []
    sr = pydicom.dcmread(path)
    assert sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
    (observer,) = sr.VerifyingObserverSequence
    assert observer.VerifyingObserverName.family_name == "radiologist-user"
    assert observer.VerificationDateTime.startswith(signed["signed_at"][:10].replace("-", ""))
    assert "UNVERIFIED" not in _run("dsrdump", str(path)).stdout

    (diagnostic,) = _resources(_bundle(client, reported), "DiagnosticReport")
    assert diagnostic["status"] == "final"

    exported = client.get(f"/api/export/report/{rid}/json", headers=viewer).json()
    assert exported["verification"]["state"] == "VERIFIED"
    assert exported["verification"]["verifier_name"] == "radiologist-user"

    _amend(client, reported)
    amended = client.get(f"/api/reports/{rid}", headers=viewer).json()
    assert amended["verification"]["state"] == "AMENDED"
    assert amended["verification_flag"] == "VERIFIED"  # DICOM has no AMENDED flag
    (diagnostic,) = _resources(_bundle(client, reported), "DiagnosticReport")
    assert diagnostic["status"] == "amended"
    exported = client.get(f"/api/export/report/{rid}/json", headers=viewer).json()
    assert exported["verification"]["state"] == "AMENDED"
    whole = " ".join(_pages(_get_pdf(client, reported, tmp_path, "amended.pdf")))
    assert "UNVERIFIED" not in whole and "Amended after signature" in whole
    sr = pydicom.dcmread(_get_sr(client, url, viewer, tmp_path / "amended.dcm"))
    assert sr.VerificationFlag == "VERIFIED"
