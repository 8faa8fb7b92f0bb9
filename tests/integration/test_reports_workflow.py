"""Report workflow through the real API on a real head CT: draft from an analysis, edits,
sign-off, addendum; roles; the hash-linked version chain and ``radiant fsck`` catching a version
edited with plain SQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ai.safety import DISCLAIMER
from appliance.config import Settings
from appliance.context import AppContext
from appliance.reports.verify import GENESIS, verify_all, version_digest
from radiant.cli import main as radiant
from tests.reporting import FINDINGS, INDICATION, CtStudy, ingest_ct, insert_analysis

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def ct(app: FastAPI, client: TestClient) -> CtStudy:
    ctx: AppContext = app.state.ctx
    return ingest_ct(ctx)


@pytest.fixture
def analysis_id(ct: CtStudy, db: sqlite_utils.Database) -> str:
    return insert_analysis(db, ct)


def _draft(client: TestClient, headers: dict[str, str], study_id: str, analysis: str) -> Any:
    response = client.post(
        "/api/reports", json={"study_id": study_id, "analysis_id": analysis}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def _audit(db: sqlite_utils.Database, report_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = db.execute(
        "SELECT action, outcome, detail FROM audit_log WHERE object_id = ? ORDER BY id",
        (report_id,),
    ).fetchall()
    return [(a, o, json.loads(d) if d else {}) for a, o, d in rows]


def test_draft_edit_sign_amend_with_roles_and_an_intact_chain(
    client: TestClient,
    as_role: Headers,
    ct: CtStudy,
    analysis_id: str,
    db: sqlite_utils.Database,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tech, rad, viewer = as_role("technician"), as_role("radiologist"), as_role("viewer")

    # Draft v1 from the analysis, made by a technician.
    report = _draft(client, tech, ct.study_id, analysis_id)
    rid = report["id"]
    content = report["content"]
    assert (report["status"], report["current_version"]) == ("draft", 1)
    assert report["verification_flag"] == "UNVERIFIED"
    assert content["header"]["study_id"] == ct.study_id
    assert content["header"]["mrn"] == "QMNx85rKkkg"
    assert content["clinical_indication"] == INDICATION
    assert "CT head" in content["technique"] and "120 kVp" in content["technique"]
    assert "4-7 mm" in content["technique"]
    assert content["technique_facts"]["kvp"] == [120.0]
    assert content["disclaimer"] == DISCLAIMER
    assert content["provenance"]["analysis_id"] == analysis_id
    assert content["provenance"]["prompt_id"] == "ct_head_primary"
    findings = content["findings"]
    assert [f["text"] for f in findings] == [f["description"] for f in FINDINGS]
    assert [f["confidence"] for f in findings] == [f["confidence"] for f in FINDINGS]
    assert findings[0]["measurements"][2] == {
        "name": "mean attenuation",
        "value": 58.0,
        "unit": "[hnsf'U]",
    }
    first, second, third = findings
    assert first["key_image"]["instance_id"] == ct.instance_ids[10]
    assert first["region"] is not None  # the box, in pixels of the key image
    assert second["key_image"]["instance_id"] == ct.instance_ids[20]
    assert second["key_image"]["slice_index"] == 20
    assert third["key_image"] is None
    assert client.get(f"/api/reports/study/{ct.study_id}", headers=viewer).json()[0]["id"] == rid

    # Viewers read only.
    assert client.get(f"/api/reports/{rid}", headers=viewer).status_code == 200
    denied = client.patch(f"/api/reports/{rid}", json={"impression": "x"}, headers=viewer)
    assert denied.status_code == 403

    # Technicians draft and hand over; only radiologists edit (the report policy table).
    refused = client.patch(f"/api/reports/{rid}", json={"impression": "x"}, headers=tech)
    assert refused.status_code == 403
    # Two edits: the impression, then the finding wording.
    edit1 = client.patch(
        f"/api/reports/{rid}",
        json={"impression": "Possible small right frontal hemorrhage.", "expected_version": 1},
        headers=rad,
    )
    assert edit1.status_code == 200, edit1.text
    edited = [
        {
            "id": f["id"],
            "location": f["location"],
            "text": f["text"],
            "impression": f["impression"],
            "measurements": f["measurements"],
        }
        for f in findings
    ]
    edited[1]["text"] = "Mildly prominent lateral ventricles, possibly age-related."
    edited.append({"location": "skull", "text": "No displaced skull fracture is seen."})
    edit2 = client.patch(
        f"/api/reports/{rid}",
        json={"findings": edited, "recommendations": "Follow-up CT in 24 hours may help."},
        headers=rad,
    )
    assert edit2.status_code == 200, edit2.text
    after = edit2.json()["content"]["findings"]
    assert [f["review_state"] for f in after] == ["pending", "edited", "pending", "accepted"]
    assert after[3]["id"] == "f4" and after[3]["source"] == "radiologist"
    assert after[1]["key_image"] == second["key_image"]  # provenance kept through the edit
    stale = client.patch(
        f"/api/reports/{rid}", json={"impression": "y", "expected_version": 1}, headers=rad
    )
    assert stale.status_code == 409

    # Sign-off: technicians never; the review confirmation is required.
    assert (
        client.patch(
            f"/api/reports/{rid}/finalize", json={"ai_findings_reviewed": True}, headers=tech
        ).status_code
        == 403
    )
    for body in ({"ai_findings_reviewed": False}, {}):
        refused = client.patch(f"/api/reports/{rid}/finalize", json=body, headers=rad)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    signed = client.patch(
        f"/api/reports/{rid}/finalize", json={"ai_findings_reviewed": True}, headers=rad
    )
    assert signed.status_code == 200, signed.text
    final = signed.json()
    assert (final["status"], final["current_version"]) == ("final", 4)
    assert final["verification_flag"] == "VERIFIED"
    assert final["signer_name"] == "radiologist-user" and final["signed_at"]
    assert [f["review_state"] for f in final["content"]["findings"]] == [
        "accepted",
        "edited",
        "accepted",
        "accepted",
    ]
    again = client.patch(
        f"/api/reports/{rid}/finalize", json={"ai_findings_reviewed": True}, headers=rad
    )
    assert again.status_code == 409

    # Signed content is locked; changes are addenda, by a radiologist.
    locked = client.patch(f"/api/reports/{rid}", json={"impression": "changed"}, headers=rad)
    assert locked.status_code == 409
    addendum = {"addendum": "Discussed with the referring physician by phone."}
    assert client.patch(f"/api/reports/{rid}", json=addendum, headers=tech).status_code == 403
    amended = client.patch(f"/api/reports/{rid}", json=addendum, headers=rad)
    assert amended.status_code == 200, amended.text
    body = amended.json()
    assert (body["status"], body["current_version"]) == ("amended", 5)
    assert body["content"]["addenda"][0]["text"] == addendum["addendum"]
    assert body["content"]["impression"] == "Possible small right frontal hemorrhage."
    assert body["signed_at"] == final["signed_at"]

    # Versions: intact, linked, old content unchanged, diffs name what changed.
    versions = client.get(f"/api/reports/{rid}/versions", headers=viewer).json()
    assert versions["chain_ok"] is True, versions["chain_problem"]
    items = versions["versions"]
    assert [v["status"] for v in items] == ["draft", "draft", "draft", "final", "amended"]
    assert [v["kind"] for v in items] == ["create", "edit", "edit", "finalize", "addendum"]
    assert items[0]["prev_hash"] == GENESIS
    assert all(items[i]["prev_hash"] == items[i - 1]["hash"] for i in range(1, 5))
    assert items[0]["content"] == content
    assert items[3]["content"] == final["content"]
    assert items[4]["content"]["findings"] == items[3]["content"]["findings"]
    changed = [{c["path"] for c in v["changes"]} for v in items]
    assert {"header", "findings", "impression", "technique"} <= changed[0]
    assert changed[1] == {"impression"}
    assert {
        "findings[f2].text",
        "findings[f2].review_state",
        "findings[f4]",
        "recommendations",
    } <= (changed[2])
    assert changed[4] == {"addenda[1]"}
    assert items[3]["author_name"] == "radiologist-user"
    assert items[0]["author_name"] == "technician-user"

    # Every step audited with ids, versions and hashes (no report text).
    trail = _audit(db, rid)
    actions = [(a, o) for a, o, _ in trail]
    for step in (
        ("report.create", "success"),
        ("report.update", "success"),
        ("report.update", "refused"),
        ("report.finalize", "refused"),
        ("report.finalize", "success"),
        ("report.addendum", "refused"),
        ("report.addendum", "success"),
        ("report.read", "success"),
        ("report.versions", "success"),
    ):
        assert step in actions, step
    hashes = {d["version"]: d["hash"] for a, o, d in trail if o == "success" and "hash" in d}
    assert hashes == {v["version"]: v["hash"] for v in items}
    assert all("Discussed" not in json.dumps(d) for _, _, d in trail)

    capsys.readouterr()
    assert radiant(["fsck", "--data-dir", str(settings.data_dir)]) == 0
    assert capsys.readouterr().out.strip().endswith("consistent")


def test_empty_draft_and_the_disclaimer_rules(
    client: TestClient, as_role: Headers, ct: CtStudy, analysis_id: str
) -> None:
    rad = as_role("radiologist")
    empty = client.post("/api/reports", json={"study_id": ct.study_id}, headers=rad)
    assert empty.status_code == 201, empty.text
    content = empty.json()["content"]
    assert content["findings"] == [] and content["provenance"] is None
    assert content["disclaimer"] == DISCLAIMER
    assert "CT head" in content["technique"]
    plain = client.post(
        "/api/reports",
        json={"study_id": ct.study_id, "include_ai_disclaimer": False},
        headers=rad,
    )
    assert plain.json()["content"]["disclaimer"] is None
    refused = client.post(
        "/api/reports",
        json={"study_id": ct.study_id, "analysis_id": analysis_id, "include_ai_disclaimer": False},
        headers=rad,
    )
    assert refused.status_code == 422
    missing = client.post("/api/reports", json={"study_id": "nope"}, headers=rad)
    assert missing.status_code == 404
    draft_id = empty.json()["id"]
    addendum = client.patch(f"/api/reports/{draft_id}", json={"addendum": "x"}, headers=rad)
    assert addendum.status_code == 422


def _fsck(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = radiant(["fsck", "--data-dir", str(settings.data_dir)])
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).strip().splitlines()


def _signed_report(client: TestClient, as_role: Headers, ct: CtStudy, analysis: str) -> str:
    rad = as_role("radiologist")
    rid = str(_draft(client, rad, ct.study_id, analysis)["id"])
    response = client.patch(
        f"/api/reports/{rid}/finalize", json={"ai_findings_reviewed": True}, headers=rad
    )
    assert response.status_code == 200
    return rid


def test_fsck_names_a_report_version_edited_with_sql(
    client: TestClient,
    as_role: Headers,
    ct: CtStudy,
    analysis_id: str,
    db: sqlite_utils.Database,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rid = _signed_report(client, as_role, ct, analysis_id)
    assert _fsck(settings, capsys)[0] == 0

    blocked = None
    try:
        db.execute("UPDATE report_versions SET content = '{}' WHERE report_id = ?", (rid,))
    except Exception as exc:  # the trigger refuses it
        blocked = str(exc)
    assert blocked is not None and "immutable" in blocked

    db.execute("DROP TRIGGER report_versions_no_update")
    stored = db.execute(
        "SELECT content FROM report_versions WHERE report_id = ? AND version = 2", (rid,)
    ).fetchone()[0]
    forged = stored.replace("Possible small right frontal", "No right frontal")
    assert forged != stored
    db.execute(
        "UPDATE report_versions SET content = ? WHERE report_id = ? AND version = 2",
        (forged, rid),
    )

    code, lines = _fsck(settings, capsys)
    assert code == 1
    assert (
        f"report chain broken: report {rid} version 2: content does not match its hash "
        "(the version was edited)"
    ) in lines
    # The API says so too.
    versions = client.get(f"/api/reports/{rid}/versions", headers=as_role("viewer")).json()
    assert versions["chain_ok"] is False and rid in versions["chain_problem"]


def test_fsck_catches_a_rehashed_forgery_and_a_removed_version(
    client: TestClient,
    as_role: Headers,
    ct: CtStudy,
    analysis_id: str,
    db: sqlite_utils.Database,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rid = _signed_report(client, as_role, ct, analysis_id)
    db.execute("DROP TRIGGER report_versions_no_update")
    db.execute("DROP TRIGGER report_versions_no_delete")
    # Rewrite the signed version and recompute its hash: the chain alone looks intact, the
    # audit trail's record of the hash does not match.
    row = db.execute(
        "SELECT report_id, version, status, kind, content, author_id, created_at, prev_hash"
        " FROM report_versions WHERE report_id = ? AND version = 2",
        (rid,),
    ).fetchone()
    fields = dict(
        zip(
            (
                "report_id",
                "version",
                "status",
                "kind",
                "content",
                "author_id",
                "created_at",
                "prev_hash",
            ),
            row,
            strict=True,
        )
    )
    fields["content"] = fields["content"].replace("hemorrhage", "nothing")
    db.execute(
        "UPDATE report_versions SET content = ?, hash = ? WHERE report_id = ? AND version = 2",
        (fields["content"], version_digest(fields), rid),
    )
    checked, problems = verify_all(db)
    assert checked == 1
    assert [p.line() for p in problems] == [
        f"report {rid} version 2: its hash differs from the one the audit log recorded"
    ]
    # Removing the newest version is caught too.
    db.execute("DELETE FROM report_versions WHERE report_id = ? AND version = 2", (rid,))
    code, lines = _fsck(settings, capsys)
    assert code == 1
    assert any(
        line.startswith(f"report chain broken: report {rid} version 1: the report says version 2")
        for line in lines
    ), lines


def test_hand_over_through_the_api(
    client: TestClient,
    as_role: Headers,
    ct: CtStudy,
    analysis_id: str,
    db: sqlite_utils.Database,
) -> None:
    tech, rad, viewer = as_role("technician"), as_role("radiologist"), as_role("viewer")
    rid = _draft(client, tech, ct.study_id, analysis_id)["id"]
    assert client.get(f"/api/reports/{rid}/handover", headers=rad).json() is None

    def handed_over_ids() -> list[str]:
        listing = client.get("/api/studies", params={"status": "handed_over"}, headers=rad)
        assert listing.status_code == 200, listing.text
        return [item["id"] for item in listing.json()["items"]]

    assert handed_over_ids() == []
    for who in (viewer, rad):  # only technicians and admins hand over (policy table)
        assert client.post(f"/api/reports/{rid}/handover", headers=who).status_code == 403
    done = client.post(f"/api/reports/{rid}/handover", headers=tech)
    assert done.status_code == 200, done.text
    assert (done.json()["by"], done.json()["version"]) == ("technician-user", 1)
    assert client.get(f"/api/reports/{rid}/handover", headers=rad).json() == done.json()
    assert handed_over_ids() == [ct.study_id]
    assert ("report.handover", "success", {"version": 1}) in _audit(db, rid)

    signed = client.patch(
        f"/api/reports/{rid}/finalize", json={"ai_findings_reviewed": True}, headers=rad
    )
    assert signed.status_code == 200, signed.text
    late = client.post(f"/api/reports/{rid}/handover", headers=tech)
    assert late.status_code == 409 and "already final" in late.text
    assert [o for a, o, _ in _audit(db, rid) if a == "report.handover"] == ["success", "refused"]
    assert client.post("/api/reports/nope/handover", headers=tech).status_code == 404
    assert client.get("/api/reports/nope/handover", headers=rad).status_code == 404
