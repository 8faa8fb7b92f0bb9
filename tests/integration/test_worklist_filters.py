"""The worklist's filters through the real API, with real studies in every state: the real GE
head CT with a completed analysis and its draft (AI draft ready), copies of the real chest
radiograph with new UIDs and patients: one handed over, one signed, one with a hand-written
draft only, one dated today, one dated 2020 and arrived two days ago. Each filter returns exactly
its studies, the totals stay right when paged, an unknown value is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.audit.models import Actor
from appliance.db.rows import iso
from appliance.reports import service as reports
from appliance.studies import service as study_service
from appliance.studies.worklist_filters import site_day
from tests.reporting import ingest_ct, insert_analysis, insert_completed_analysis
from tests.reporting import radiograph_copy as _radiograph

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]

def _draft(client: TestClient, headers: dict[str, str], study_id: str, analysis: str | None
           ) -> str:
    body: dict[str, Any] = {"study_id": study_id}
    if analysis:
        body["analysis_id"] = analysis
    response = client.post("/api/reports", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _ids(client: TestClient, headers: dict[str, str], **query: Any) -> tuple[set[str], int]:
    response = client.get("/api/studies", params={"limit": 200, **query}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    ids = {item["id"] for item in body["items"]}
    assert len(ids) == body["total"]
    return ids, int(body["total"])


def test_each_worklist_filter_returns_exactly_its_studies(
    app: FastAPI, client: TestClient, as_role: Headers
) -> None:
    ctx = app.state.ctx
    db = ctx.pool.get()
    tech, radiologist = as_role("technician"), as_role("radiologist")
    today = site_day(ctx.settings.timezone).study_date

    ct = ingest_ct(ctx)  # no StudyDate
    _draft(client, radiologist, ct.study_id, insert_analysis(db, ct))
    handed = _radiograph(ctx, "Handed")
    handed_report = _draft(client, radiologist, handed, insert_completed_analysis(db, handed))
    reports.hand_over(db, handed_report, Actor(name="technician-1", role="technician"))
    signed = _radiograph(ctx, "Signed")
    signed_report = _draft(client, radiologist, signed, insert_completed_analysis(db, signed))
    response = client.patch(
        f"/api/reports/{signed_report}/finalize", json={"ai_findings_reviewed": True},
        headers=radiologist,
    )
    assert response.status_code == 200, response.text
    manual = _radiograph(ctx, "Manual")
    _draft(client, radiologist, manual, None)  # a hand-written draft: no AI draft
    dated_today = _radiograph(ctx, "Today", study_date=today)
    old = _radiograph(ctx, "Old", study_date="20200101")
    two_days_ago = iso(datetime.now(UTC) - timedelta(days=2))  # as if it arrived then
    db.execute("UPDATE studies SET created_at = ? WHERE id = ?", (two_days_ago, old))
    db.conn.commit()
    everyone = {ct.study_id, handed, signed, manual, dated_today, old}

    assert _ids(client, tech)[0] == everyone
    expected = {
        "unreported": everyone - {signed},
        "draft_ready": {ct.study_id},
        "handed_over": {handed},
        "signed": {signed},
        "stable": everyone,
        "receiving": set(),
        "analyzing": set(),
    }
    for status, studies in expected.items():
        assert _ids(client, tech, status=status)[0] == studies, status
    assert _ids(client, tech, today="true")[0] == {dated_today}
    assert _ids(client, tech, arrived_today="true")[0] == everyone - {old}
    assert _ids(client, tech, status="unreported", arrived_today="true")[0] == (
        everyone - {old, signed}
    )
    assert _ids(client, tech, urgent="true")[0] == set()
    # The worklist's chips say the same: "AI draft ready" on the study the filter finds only.
    states = study_service.worklist_states(db, sorted(everyone))
    assert {sid for sid, state in states.items() if state.ai_draft} == {ct.study_id}
    assert {sid for sid, state in states.items() if state.handed_over} == {handed}

    # Paged one by one, the total stays the number of matches and the pages cover them.
    seen: set[str] = set()
    for offset in range(5):
        response = client.get(
            "/api/studies", params={"status": "unreported", "limit": 1, "offset": offset},
            headers=tech,
        )
        body = response.json()
        assert body["total"] == 5 and len(body["items"]) == 1
        seen.add(body["items"][0]["id"])
    assert seen == everyone - {signed}

    # The worklist's chips agree: the handed-over study says so.
    listed = client.get("/api/studies", params={"status": "handed_over"}, headers=tech).json()
    assert [item["id"] for item in listed["items"]] == [handed]

    # Signing the handed-over draft moves the study from handed over to signed.
    response = client.patch(
        f"/api/reports/{handed_report}/finalize", json={"ai_findings_reviewed": True},
        headers=radiologist,
    )
    assert response.status_code == 200, response.text
    assert _ids(client, tech, status="handed_over")[0] == set()
    assert _ids(client, tech, status="signed")[0] == {signed, handed}


@pytest.mark.parametrize(
    "query",
    [{"status": "bogus"}, {"status": "draft"}, {"today": "maybe"}, {"arrived_today": "x"}],
)
def test_an_unknown_filter_value_is_refused(
    client: TestClient, as_role: Headers, query: dict[str, str]
) -> None:
    response = client.get("/api/studies", params=query, headers=as_role("viewer"))
    assert response.status_code == 422, response.text


def test_today_is_the_site_day() -> None:
    late = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    paris = site_day("Europe/Paris", late)
    assert paris.study_date == "20261207"
    assert (paris.start, paris.end) == ("2026-12-06T23:00:00.000000Z",
                                        "2026-12-07T23:00:00.000000Z")
    assert site_day("Africa/Abidjan", late).study_date == "20261206"
