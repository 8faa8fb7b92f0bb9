"""Turnaround times through the real API: a real CT arrives, is complete, analysed, its draft
handed over by the technician and signed by the radiologist; the study's turnaround names each
moment in order, and the per-day medians count it. A second part checks the medians over
several studies of different days."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.audit.models import Actor
from appliance.db.rows import iso, new_id, utc_now
from appliance.reports import service as reports
from appliance.triage import turnaround
from tests.reporting import ingest_ct, insert_analysis

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]


def test_a_study_turnaround_from_arrival_to_signature(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    ct = ingest_ct(app.state.ctx)
    tech, rad = as_role("technician"), as_role("radiologist")
    before = client.get(f"/api/studies/{ct.study_id}/turnaround", headers=tech).json()
    assert before["arrival"] and before["complete"]
    assert (before["analysed"], before["handed_over"], before["signed"]) == (None, None, None)
    assert before["minutes"]["signed"] is None

    analysis = insert_analysis(db, ct)
    draft = client.post(
        "/api/reports", json={"study_id": ct.study_id, "analysis_id": analysis}, headers=tech
    )
    assert draft.status_code == 201, draft.text
    report_id = draft.json()["id"]
    technician = db.execute("SELECT id FROM users WHERE username = 'technician-user'").fetchone()
    reports.hand_over(
        db, report_id, Actor(name="technician-user", role="technician", user_id=technician[0])
    )
    signed = client.patch(
        f"/api/reports/{report_id}/finalize", json={"ai_findings_reviewed": True}, headers=rad
    )
    assert signed.status_code == 200, signed.text

    after = client.get(f"/api/studies/{ct.study_id}/turnaround", headers=tech).json()
    moments = [after[k] for k in ("arrival", "complete", "analysed", "handed_over", "signed")]
    assert all(moments) and moments == sorted(moments), moments
    assert all(after["minutes"][step] >= 0 for step in turnaround.STEPS)
    assert client.get("/api/studies/nope/turnaround", headers=tech).status_code == 404

    days = client.get("/api/triage/turnaround", params={"days": 3}, headers=tech).json()
    assert [d["day"] for d in days] == [
        (utc_now().date() - timedelta(days=n)).isoformat() for n in (2, 1, 0)
    ]
    assert [(d["arrived"], d["signed"]) for d in days] == [(0, 0), (0, 0), (1, 1)]
    assert days[-1]["median_minutes"]["signed"] == after["minutes"]["signed"]
    assert days[0]["median_minutes"]["signed"] is None
    for bad in (0, 91, "x"):
        answer = client.get("/api/triage/turnaround", params={"days": bad}, headers=tech)
        assert answer.status_code == 422


def _study(db: sqlite_utils.Database, arrival: str, signed_after_min: float | None) -> None:
    patient, study = new_id(), new_id()
    db.execute(
        "INSERT INTO patients (id, mrn, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (patient, f"MRN-{patient[:8]}", arrival, arrival),
    )
    db.execute(
        "INSERT INTO studies (id, patient_id, study_uid, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (study, patient, f"1.2.826.0.1.{int(utc_now().timestamp() * 1e6)}", arrival, arrival),
    )
    if signed_after_min is not None:
        signed = iso(utc_now().fromisoformat(arrival) + timedelta(minutes=signed_after_min))
        db.execute(
            "INSERT INTO reports (id, study_id, status, signed_at, created_at, updated_at)"
            " VALUES (?, ?, 'final', ?, ?, ?)",
            (new_id(), study, signed, arrival, arrival),
        )


def test_daily_medians_over_studies_of_several_days(db: sqlite_utils.Database) -> None:
    today = utc_now().replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    for minutes in (10, 30, 200):  # median 30
        _study(db, iso(yesterday), minutes)
    _study(db, iso(yesterday), None)  # not signed: counted as arrived only
    _study(db, iso(today), 45)
    _study(db, iso(today - timedelta(days=5)), 5)  # outside a 2-day window
    days = turnaround.daily(db, 2, today.date())
    assert [(d.day, d.arrived, d.signed) for d in days] == [
        (yesterday.date().isoformat(), 4, 3),
        (today.date().isoformat(), 1, 1),
    ]
    assert [d.median_minutes["signed"] for d in days] == [30.0, 45.0]
    assert days[0].median_minutes["analysed"] is None
