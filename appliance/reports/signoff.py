"""The road to a signature: a decision on each flagged AI item (accept or reject, rejected
findings kept visible), the hand-over to a radiologist, and the radiologist's sign-off.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import now_iso
from appliance.errors import AppError, Conflict, InvalidInput
from appliance.reports import decisions
from appliance.reports.models import (
    FinalizeRequest,
    RejectedFinding,
    ReportOut,
)
from appliance.reports.policy import ReportAction, require
from appliance.reports.store import (
    StoredReport,
    append_version,
    check_version,
    load,
    refuse,
    report_out,
    user_name,
)

#: The review target naming the report's impression (findings are named by their id).
IMPRESSION = decisions.IMPRESSION
undecided_items = decisions.undecided_items


def finalize(
    db: sqlite_utils.Database, report_id: str, data: FinalizeRequest, actor: Actor
) -> ReportOut:
    """Sign the current draft: records signer and time, locks the content (radiologists only;
    the route allows no other role). The confirmation that every AI finding was reviewed is
    required (InvalidInput otherwise), and an explicit decision on every item the safety layer
    flagged (:class:`~appliance.reports.decisions.UndecidedItems`, 409, otherwise); pending
    unflagged AI findings become ``accepted``."""
    error: AppError | None = None
    with transaction(db):
        report = load(db, report_id)
        try:
            require(actor, ReportAction.SIGN)
            if data.ai_findings_reviewed is not True:
                raise InvalidInput(
                    "confirm that every AI finding was reviewed (ai_findings_reviewed: true)"
                )
            if report.signed:
                raise Conflict(
                    f"the report is already {report.status}; add an addendum instead",
                    code="report_signed",
                )
            check_version(report, data.expected_version)
            decisions.require_decided(report.content)
        except AppError as exc:
            refuse(db, actor, "report.finalize", report_id, exc)
            error = exc
        else:
            content = report.content.model_copy(deep=True)
            for finding in content.findings:
                if finding.review_state == "pending":
                    finding.review_state = "accepted"
            version = int(report.row["current_version"]) + 1
            row = append_version(
                db,
                actor,
                "report.finalize",
                report_id,
                version=version,
                status="final",
                kind="finalize",
                content=content,
                prev_hash=report.version["hash"],
                detail={"ai_findings_reviewed": True},
            )
            head = {
                "status": "final",
                "current_version": version,
                "signed_by": actor.user_id,
                "signed_at": row["created_at"],
                "updated_at": row["created_at"],
            }
            db.table("reports").update(report_id, head)
            updated = StoredReport(
                {**report.row, **head},
                row,
                content,
                user_name(db, actor.user_id) or actor.name,
            )
    if error is not None:
        raise error
    return report_out(updated)


def review_finding(
    db: sqlite_utils.Database,
    report_id: str,
    finding_id: str,
    decision: str,
    actor: Actor,
) -> ReportOut:
    """Accept a finding of a draft (``review_state`` accepted) or reject it (moved out of the
    findings into ``rejected_findings`` with who rejected it and when, so the report's history
    still shows it); ``finding_id`` :data:`IMPRESSION` accepts a flagged impression as it
    stands. A new version, audited ``report.review``."""
    if decision not in ("accepted", "rejected"):
        raise InvalidInput("decision must be 'accepted' or 'rejected'")
    error: AppError | None = None
    with transaction(db):
        report = load(db, report_id)
        try:
            require(actor, ReportAction.REVIEW_FINDINGS)
            if report.signed:
                raise Conflict(
                    "the report is signed and its content is locked", code="report_signed"
                )
            if finding_id == IMPRESSION:
                if decision != "accepted" or report.content.impression_review != "pending":
                    raise InvalidInput(
                        "the impression is accepted as it stands or edited, not rejected"
                        if decision != "accepted"
                        else "the impression awaits no decision"
                    )
            elif not any(f.id == finding_id for f in report.content.findings):
                raise InvalidInput(f"no finding {finding_id} in the current version")
        except AppError as exc:
            refuse(db, actor, "report.review", report_id, exc)
            error = exc
        else:
            content = report.content.model_copy(deep=True)
            if finding_id == IMPRESSION:
                content.impression_review = "accepted"
            elif decision == "rejected":
                gone = next(f for f in content.findings if f.id == finding_id)
                gone.review_state = "rejected"
                content.rejected_findings.append(
                    RejectedFinding(
                        finding=gone,
                        rejected_by=user_name(db, actor.user_id) or actor.name,
                        rejected_at=now_iso(),
                    )
                )
                content.findings = [f for f in content.findings if f.id != finding_id]
            else:
                for finding in content.findings:
                    if finding.id == finding_id:
                        finding.review_state = "accepted"
            version = int(report.row["current_version"]) + 1
            row = append_version(
                db,
                actor,
                "report.review",
                report_id,
                version=version,
                status="draft",
                kind="edit",
                content=content,
                prev_hash=report.version["hash"],
                detail={"finding_id": finding_id, "decision": decision},
            )
            head = {"current_version": version, "updated_at": row["created_at"]}
            db.table("reports").update(report_id, head)
            updated = StoredReport({**report.row, **head}, row, content, report.signer_name)
    if error is not None:
        raise error
    return report_out(updated)


def hand_over(db: sqlite_utils.Database, report_id: str, actor: Actor) -> dict[str, Any]:
    """Mark a draft as ready for a radiologist (audited ``report.handover``; the audit row is
    the record, no table changes). Conflict for a signed report."""
    with transaction(db):
        report = load(db, report_id)
        error: AppError | None = None
        try:
            require(actor, ReportAction.HAND_OVER)
            if report.signed:
                raise Conflict(f"the report is already {report.status}", code="report_signed")
        except AppError as exc:
            error = exc
        if error is not None:
            refuse(db, actor, "report.handover", report_id, error)
        else:
            audit.record(
                db,
                actor,
                "report.handover",
                object_type="report",
                object_id=report_id,
                detail={"version": int(report.row["current_version"])},
            )
            error = None
    if error is not None:
        raise error
    found = handed_over(db, report_id)
    assert found is not None
    return found


def handed_over(db: sqlite_utils.Database, report_id: str) -> dict[str, Any] | None:
    """Who handed the draft over, when, at which version; None if never."""
    entry = audit.latest(db, "report.handover", report_id)
    if entry is None:
        return None
    return {
        "by": entry.actor,
        "at": entry.ts,
        "version": (entry.detail or {}).get("version"),
    }
