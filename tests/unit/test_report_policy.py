"""The report policy table, written out here independently of the code, and the two places
that must follow it: the API (through the routes and the service) and the screen (which
controls each role is shown). One table, one test module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.errors import Forbidden
from appliance.reports import service as reports
from appliance.reports.models import FinalizeRequest, FindingEdit, ReportCreate, ReportUpdate
from appliance.reports.policy import POLICY, ReportAction, require
from tests.reporting import ingest_ct, insert_analysis
from tests.unit.test_ui_screens import Screen, ct_study, draft, import_set, run

A, R, T, V = Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER
EXPECTED: dict[ReportAction, frozenset[Role]] = {
    ReportAction.READ: frozenset({A, R, T, V}),
    ReportAction.CREATE_DRAFT: frozenset({A, R, T}),
    ReportAction.EDIT_DRAFT: frozenset({R}),
    ReportAction.REVIEW_FINDINGS: frozenset({R}),
    ReportAction.HAND_OVER: frozenset({A, T}),
    ReportAction.SIGN: frozenset({R}),
    ReportAction.ADDENDUM: frozenset({R}),
    ReportAction.EXPORT: frozenset({A, R, T, V}),
    ReportAction.SEND: frozenset({A, R, T}),
}
Headers = Callable[[str], dict[str, str]]


def test_the_table_is_the_agreed_policy() -> None:
    assert POLICY == EXPECTED


def _actor(role: Role) -> Actor:
    return Actor(name=f"{role.value}-user", role=role.value)


def _refused(call: Callable[..., object], *args: object) -> bool:
    try:
        call(*args)
    except Forbidden:
        return True
    return False


def test_the_api_and_the_service_follow_the_table(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    analysis = insert_analysis(db, ct)
    rad = as_role("radiologist")

    def new_draft() -> str:
        made = client.post(
            "/api/reports", json={"study_id": ct.study_id, "analysis_id": analysis}, headers=rad
        )
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    def signed() -> str:
        rid = new_draft()
        done = client.patch(
            f"/api/reports/{rid}/finalize", json={"ai_findings_reviewed": True}, headers=rad
        )
        assert done.status_code == 200, done.text
        return rid

    def first_finding(rid: str) -> str:
        return reports.load(db, rid).content.findings[0].id

    failures: list[str] = []
    for role in Role:
        headers = as_role(role.value)
        rid = new_draft()
        answers: dict[ReportAction, int] = {
            ReportAction.READ: client.get(f"/api/reports/{rid}", headers=headers).status_code,
            ReportAction.CREATE_DRAFT: client.post(
                "/api/reports", json={"study_id": ct.study_id}, headers=headers
            ).status_code,
            ReportAction.EDIT_DRAFT: client.patch(
                f"/api/reports/{rid}", json={"impression": "Edited."}, headers=headers
            ).status_code,
            ReportAction.EXPORT: client.get(
                f"/api/export/report/{rid}/json", headers=headers
            ).status_code,
            ReportAction.SEND: client.post(
                f"/api/export/report/{rid}/send", json={"peer": "NOPE"}, headers=headers
            ).status_code,
            ReportAction.SIGN: client.patch(
                f"/api/reports/{new_draft()}/finalize",
                json={"ai_findings_reviewed": True},
                headers=headers,
            ).status_code,
            ReportAction.ADDENDUM: client.patch(
                f"/api/reports/{signed()}", json={"addendum": "Phoned."}, headers=headers
            ).status_code,
            ReportAction.REVIEW_FINDINGS: client.post(
                f"/api/reports/{rid}/review",
                json={"item": first_finding(rid), "decision": "accepted"},
                headers=headers,
            ).status_code,
        }
        for action, status in answers.items():
            if (status == 403) == (role in EXPECTED[action]):
                failures.append(f"API {action} as {role}: {status}")
        # Actions the screen takes without an API route: the service's own check.
        fresh = new_draft()
        finding = reports.load(db, fresh).content.findings[0].id
        actor = _actor(role)
        for action, refused in (
            (
                ReportAction.REVIEW_FINDINGS,
                _refused(reports.review_finding, db, fresh, finding, "accepted", actor),
            ),
            (ReportAction.HAND_OVER, _refused(reports.hand_over, db, fresh, actor)),
        ):
            if refused == (role in EXPECTED[action]):
                failures.append(f"service {action} as {role}: refused={refused}")
    assert failures == []


def test_patch_with_null_findings_is_a_clear_422(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    rad = as_role("radiologist")
    rid = client.post("/api/reports", json={"study_id": ct.study_id}, headers=rad).json()["id"]
    answer = client.patch(f"/api/reports/{rid}", json={"findings": None}, headers=rad)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "findings must be a list" in answer.text
    assert reports.load(db, rid).version["version"] == 1  # nothing written


def test_system_actors_draft_but_never_edit_or_sign() -> None:
    system = Actor.system("analysis")
    require(system, ReportAction.CREATE_DRAFT)
    for action in (ReportAction.EDIT_DRAFT, ReportAction.SIGN, ReportAction.REVIEW_FINDINGS):
        with pytest.raises(Forbidden):
            require(system, action)


# Which marker on the report screen offers which action (draft, then signed).
DRAFT_MARKERS = {
    ReportAction.EDIT_DRAFT: "report-save",
    ReportAction.HAND_OVER: "hand-over",
    ReportAction.SIGN: "report-finalize",
    ReportAction.EXPORT: "export-pdf",
}


@pytest.mark.parametrize("role", list(Role))
def test_the_screen_offers_what_the_table_allows(tmp_path: Path, role: Role) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        await s.sign_in(s.add_user(role))
        await s.see("Worklist")
        # No report yet: the create button follows CREATE_DRAFT.
        await s.user.open(f"/report/{study_id}")
        await s.see(marker="report-none")
        if role in EXPECTED[ReportAction.CREATE_DRAFT]:
            await s.see(marker="create-report")
        else:
            await s.user.should_not_see(marker="create-report")
        report_id = draft(s, study_id)
        rad = Actor(name="dr", role="radiologist")
        reports.update(
            s.db,
            report_id,
            ReportUpdate(findings=[FindingEdit(text="Old infarct.")]),
            rad,
        )
        finding = reports.load(s.db, report_id).content.findings[0].id
        await s.user.open(f"/report/{study_id}")
        await s.see(marker="export-pdf")
        for action, marker in {
            **DRAFT_MARKERS,
            ReportAction.REVIEW_FINDINGS: f"accept-{finding}",
        }.items():
            if role in EXPECTED[action]:
                await s.see(marker=marker)
            else:
                await s.user.should_not_see(marker=marker)
        reports.finalize(s.db, report_id, FinalizeRequest(ai_findings_reviewed=True), rad)
        await s.user.open(f"/report/{study_id}")
        await s.see(marker="verified-banner")
        if role in EXPECTED[ReportAction.ADDENDUM]:
            await s.see(marker="addendum")
        else:
            await s.user.should_not_see(marker="addendum")

    run(tmp_path, body)


def test_create_draft_is_refused_by_the_service_for_a_viewer(
    app: FastAPI, client: TestClient, db: sqlite_utils.Database
) -> None:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    with pytest.raises(Forbidden, match="viewer role may not create a report draft"):
        reports.create(
            db, ctx.store, ReportCreate(study_id=ct.study_id), _actor(Role.VIEWER), facility="x"
        )
