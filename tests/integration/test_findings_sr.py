"""The findings SR stored as an instance of its study: found by QIDO-RS, retrieved by WADO-RS,
read by pydicom, checked by dicom3tools' ``dciodvfy``; a verified one added at signing while
the unverified one stays (IHE AI Results; PS3.3 C.17.2 VerificationFlag)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset

from appliance.context import AppContext
from appliance.dicom.index_rows import DERIVED_SOURCES
from appliance.export import findings_sr
from appliance.studies.stability import mark_stable
from tests.reporting import FINDINGS, ingest_ct, insert_analysis

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
SR_MULTIPART = 'multipart/related; type="application/dicom"'


@dataclass
class Drafted:
    ctx: AppContext
    report_id: str
    study_uid: str
    image_uids: set[str]
    rad: dict[str, str]
    viewer: dict[str, str]


@pytest.fixture
def drafted(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> Drafted:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    study_uid = db.execute("SELECT study_uid FROM studies WHERE id = ?", (ct.study_id,)).fetchone()
    images = {str(r[0]) for r in db.execute("SELECT sop_instance_uid FROM instances")}
    rad = as_role("radiologist")
    response = client.post(
        "/api/reports",
        json={"study_id": ct.study_id, "analysis_id": insert_analysis(db, ct)},
        headers=rad,
    )
    assert response.status_code == 201, response.text
    return Drafted(ctx, response.json()["id"], str(study_uid[0]), images, rad, as_role("viewer"))


def _tag(item: dict[str, Any], tag: str) -> Any:
    return item.get(tag, {}).get("Value", [None])[0]


def _sr_series(client: TestClient, d: Drafted) -> list[dict[str, Any]]:
    response = client.get(f"/dicom-web/studies/{d.study_uid}/series", headers=d.viewer)
    assert response.status_code == 200, response.text
    return [s for s in response.json() if _tag(s, "00080060") == "SR"]


def _instances(client: TestClient, d: Drafted, series_uid: str) -> list[str]:
    response = client.get(
        f"/dicom-web/studies/{d.study_uid}/series/{series_uid}/instances", headers=d.viewer
    )
    assert response.status_code == 200, response.text
    return [str(_tag(i, "00080018")) for i in response.json()]


def _parts(body: bytes, content_type: str) -> Iterator[bytes]:
    boundary = next(
        p.split("=", 1)[1].strip('"')
        for p in content_type.split(";")
        if p.strip().startswith("boundary=")
    ).encode()
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        yield chunk.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")


def _retrieve(
    client: TestClient, d: Drafted, series_uid: str, instance_uid: str, path: Path
) -> Dataset:
    response = client.get(
        f"/dicom-web/studies/{d.study_uid}/series/{series_uid}/instances/{instance_uid}",
        headers={**d.viewer, "Accept": SR_MULTIPART},
    )
    assert response.status_code == 200, response.text
    (data,) = list(_parts(response.content, response.headers["content-type"]))
    path.write_bytes(data)
    return pydicom.dcmread(path)


def _scoord_references(items: Any) -> list[str]:
    """SOP Instance UIDs of the images each SCOORD of the content tree is selected from."""
    found: list[str] = []
    for item in items or []:
        if item.ValueType == "SCOORD":
            found += [
                ref.ReferencedSOPInstanceUID
                for image in item.ContentSequence
                for ref in image.ReferencedSOPSequence
            ]
        found += _scoord_references(item.get("ContentSequence"))
    return found


def _texts(items: Any, concept: str | None = None) -> list[str]:
    """The TEXT items' values (only those whose concept name has code ``concept``)."""
    found: list[str] = []
    for item in items or []:
        if item.ValueType == "TEXT" and (
            concept is None or item.ConceptNameCodeSequence[0].CodeValue == concept
        ):
            found.append(str(item.TextValue))
        found += _texts(item.get("ContentSequence"), concept)
    return found


def _groups(items: Any) -> int:
    """Measurement Group containers (DCM 125007) in the content tree."""
    return sum(
        (item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "125007")
        + _groups(item.get("ContentSequence"))
        for item in items or []
    )


def _dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if "Error" in line]


def test_draft_and_signed_findings_sr_are_instances_of_the_study(
    client: TestClient, drafted: Drafted, tmp_path: Path
) -> None:
    (series,) = _sr_series(client, drafted)
    assert _tag(series, "0008103E") == "RadiantAI findings, UNVERIFIED"
    series_uid = str(_tag(series, "0020000E"))
    (draft_uid,) = _instances(client, drafted, series_uid)
    draft = _retrieve(client, drafted, series_uid, draft_uid, tmp_path / "draft.dcm")
    assert draft.Modality == "SR" and draft.StudyInstanceUID == drafted.study_uid
    assert draft.VerificationFlag == "UNVERIFIED" and "VerifyingObserverSequence" not in draft
    scoords = _scoord_references(draft.ContentSequence)
    assert scoords and set(scoords) <= drafted.image_uids  # the boxed finding, on its image
    # One measurement group per boxed finding (OHIF fails on a group without SCOORD); every
    # finding's text is in the document.
    assert len(scoords) == _groups(draft.ContentSequence) == sum(1 for f in FINDINGS if f["box"])
    texts = " ".join(_texts(draft.ContentSequence))
    assert all(str(f["description"]) in texts for f in FINDINGS)
    # each finding without a box is a TEXT item "Finding" (DCM 121071) of the narrative
    unboxed = [str(f["description"]) for f in FINDINGS if not f["box"]]
    finding_texts = _texts(draft.ContentSequence, concept="121071")
    assert unboxed and all(any(d in t for t in finding_texts) for d in unboxed)
    (equipment,) = [e for e in draft.ContributingEquipmentSequence if e.Manufacturer == "RadiantAI"]
    assert equipment.ManufacturerModelName == "google/medgemma-1.5-4b-it"
    assert "test-rev-1" in equipment.SoftwareVersions
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"  # Processing Eq.
    assert _dciodvfy_errors(tmp_path / "draft.dcm") == []

    # Stored through ingest: audited as any instance and queued for replication.
    db = drafted.ctx.pool.get()
    key = db.execute(
        "SELECT storage_key FROM instances WHERE sop_instance_uid = ? AND source = ?",
        (draft_uid, findings_sr.SOURCE),
    ).fetchone()[0]
    assert db.execute(
        "SELECT status FROM sync_queue WHERE object_key = ?", (f"objects/{key}",)
    ).fetchone()
    actions = {r[0] for r in db.execute("SELECT action FROM audit_log")}
    assert {"dicom.store", findings_sr.ACTION} <= actions
    # A derived object: the study stays stable (no new stability event, so no new analysis).
    assert findings_sr.SOURCE in DERIVED_SOURCES
    assert db.execute("SELECT status FROM studies").fetchone()[0] == "stable"
    assert {r[0] for r in db.execute("SELECT status FROM series")} == {"stable"}
    assert mark_stable(db, stable_age_s=0) == []

    signed = client.patch(
        f"/api/reports/{drafted.report_id}/finalize",
        json={"ai_findings_reviewed": True},
        headers=drafted.rad,
    )
    assert signed.status_code == 200, signed.text
    by_description = {_tag(s, "0008103E"): s for s in _sr_series(client, drafted)}
    assert set(by_description) == {findings_sr.UNVERIFIED, findings_sr.VERIFIED}
    assert _instances(client, drafted, series_uid) == [draft_uid]  # the draft's is kept
    verified_series = str(_tag(by_description[findings_sr.VERIFIED], "0020000E"))
    (final_uid,) = _instances(client, drafted, verified_series)
    assert final_uid != draft_uid
    final = _retrieve(client, drafted, verified_series, final_uid, tmp_path / "final.dcm")
    assert final.VerificationFlag == "VERIFIED" and final.CompletionFlag == "COMPLETE"
    observer = final.VerifyingObserverSequence[0]
    assert observer.VerifyingObserverName.family_name == "radiologist-user"
    assert _scoord_references(final.ContentSequence) == scoords
    assert _dciodvfy_errors(tmp_path / "final.dcm") == []

    # An addendum: one more verified instance in the same series; the others stay.
    amended = client.patch(
        f"/api/reports/{drafted.report_id}",
        json={"addendum": "Reviewed with a colleague."},
        headers=drafted.rad,
    )
    assert amended.status_code == 200, amended.text
    assert final_uid in _instances(client, drafted, verified_series)
    assert len(_instances(client, drafted, verified_series)) == 2
    assert _instances(client, drafted, series_uid) == [draft_uid]


def test_a_report_without_analysis_publishes_nothing(
    app: FastAPI, client: TestClient, as_role: Headers
) -> None:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    response = client.post(
        "/api/reports", json={"study_id": ct.study_id}, headers=as_role("radiologist")
    )
    assert response.status_code == 201, response.text
    db = ctx.pool.get()
    assert db.execute("SELECT COUNT(*) FROM instances WHERE source = 'report'").fetchone()[0] == 0
