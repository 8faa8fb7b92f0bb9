"""Every service action that writes a report version leaves a chain that verifies (no false
tamper alarm), and a version written with plain SQL is still caught (issue: ``report.review``
was missing from the actions the check reads back)."""

from __future__ import annotations

import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.audit.models import Actor
from appliance.auth import service as auth_service
from appliance.auth.models import Role, UserCreate
from appliance.context import AppContext
from appliance.db.rows import new_id, now_iso
from appliance.reports import service
from appliance.reports.models import FinalizeRequest, ReportCreate, ReportUpdate
from appliance.reports.verify import VERSION_ACTIONS, verify_report, version_digest
from tests.conftest import PASSWORD
from tests.reporting import ingest_ct, insert_analysis

pytestmark = pytest.mark.integration


def _radiologist(db: sqlite_utils.Database) -> Actor:
    user = auth_service.create_user(
        db,
        UserCreate(username="dr-chain", password=PASSWORD, role=Role.RADIOLOGIST),
        Actor.system("test"),
    )
    return Actor(name=user.username, role="radiologist", user_id=user.id)


def test_each_version_writer_verifies_and_a_sql_version_is_caught(
    app: FastAPI, client: TestClient, db: sqlite_utils.Database
) -> None:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    analysis_id = insert_analysis(db, ct)
    rad = _radiologist(db)
    report = service.create(
        db,
        ctx.store,
        ReportCreate(study_id=ct.study_id, analysis_id=analysis_id),
        rad,
        facility="Test clinic",
    )
    rid = report.id
    service.update(db, rid, ReportUpdate(impression="Possible small bleed."), rad)
    first, second = report.content.findings[0].id, report.content.findings[1].id
    service.review_finding(db, rid, first, "accepted", rad)
    service.review_finding(db, rid, second, "rejected", rad)
    service.finalize(db, rid, FinalizeRequest(ai_findings_reviewed=True), rad)
    service.update(db, rid, ReportUpdate(addendum="Phoned to the referrer."), rad)

    actions = {
        r[0]
        for r in db.execute(
            "SELECT DISTINCT action FROM audit_log WHERE object_id = ? AND outcome = 'success'"
            " AND detail LIKE '%\"hash\"%'",
            (rid,),
        )
    }
    assert actions == set(VERSION_ACTIONS)  # every writer was exercised
    assert verify_report(db, rid) == []
    versions = service.versions(db, rid, rad)
    assert versions.chain_ok and versions.chain_problem is None
    assert len(versions.versions) == 6

    # A version appended with SQL, correctly linked and hashed, has no audit record.
    last = db.execute(
        "SELECT hash, content FROM report_versions WHERE report_id = ? AND version = 6", (rid,)
    ).fetchone()
    forged = {
        "id": new_id(),
        "report_id": rid,
        "version": 7,
        "status": "amended",
        "kind": "addendum",
        "content": last[1],
        "author_id": rad.user_id,
        "created_at": now_iso(),
        "prev_hash": last[0],
    }
    forged["hash"] = version_digest(forged)
    db.table("report_versions").insert(forged)
    db.execute("UPDATE reports SET current_version = 7 WHERE id = ?", (rid,))
    lines = [p.line() for p in verify_report(db, rid)]
    assert lines == [
        f"report {rid} version 7: not recorded in the audit log (written outside the appliance)"
    ]


def test_an_unlisted_action_cannot_write_a_version(
    app: FastAPI, client: TestClient, db: sqlite_utils.Database
) -> None:
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    rad = _radiologist(db)
    report = service.create(
        db, ctx.store, ReportCreate(study_id=ct.study_id), rad, facility="Test clinic"
    )
    with pytest.raises(ValueError, match=r"report\.retitle is not a version-writing action"):
        service.append_version(  # the guard itself is under test
            db,
            rad,
            "report.retitle",
            report.id,
            version=2,
            status="draft",
            kind="edit",
            content=report.content,
            prev_hash=report.hash,
        )
