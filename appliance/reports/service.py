"""Reports: draft from an analysis, edits as immutable versions, sign-off, addenda; audited.

Workflow: ``draft`` -> (radiologist signs) ``final`` -> (addendum) ``amended``. Every save
appends a ``report_versions`` row (author, time, content, ``prev_hash``, ``hash``; see
:mod:`appliance.reports.verify`) and an audit row naming the version and its hash; rows are
never updated (triggers refuse it). A signed report's content is locked: later changes are
addenda appended to the content of a new version, so the signed text stays visible as it was.
Audit rows carry ids, versions and hashes only, never report text or names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import new_id, now_iso
from appliance.errors import AppError, Conflict, InvalidInput
from appliance.reports import builder, decisions, diff
from appliance.reports.models import (
    Addendum,
    FinalizeRequest,
    RejectedFinding,
    ReportContent,
    ReportCreate,
    ReportFinding,
    ReportOut,
    ReportSummary,
    ReportUpdate,
    ReportVersionOut,
    ReportVersions,
    VerificationOut,
)
from appliance.reports.policy import ReportAction, require
from appliance.reports.verification import Verification
from appliance.reports.verify import GENESIS, VERSION_ACTIONS, verify_report, version_digest
from appliance.storage.service import ObjectStore

SIGNED = ("final", "amended")
#: The review target naming the report's impression (findings are named by their id).
IMPRESSION = decisions.IMPRESSION
undecided_items = decisions.undecided_items


@dataclass(frozen=True)
class StoredReport:
    """A report row with its current version, as exports need it."""

    row: dict[str, Any]
    version: dict[str, Any]
    content: ReportContent
    signer_name: str | None

    @property
    def status(self) -> str:
        return str(self.row["status"])

    @property
    def signed(self) -> bool:
        return self.status in SIGNED

    @property
    def verification(self) -> Verification:
        return Verification.of(self.status, self.signer_name, self.row["signed_at"])


def user_name(db: sqlite_utils.Database, user_id: str | None) -> str | None:
    """A user's full name, else their user name."""
    if not user_id:
        return None
    row = db.execute("SELECT full_name, username FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        return None
    return str(row[0] or row[1])


def _report_row(db: sqlite_utils.Database, report_id: str) -> dict[str, Any]:
    return builder.one(
        db, "SELECT * FROM reports WHERE id = ?", (report_id,), f"report {report_id}"
    )


def _version_rows(db: sqlite_utils.Database, report_id: str) -> list[dict[str, Any]]:
    return builder.rows(
        db, "SELECT * FROM report_versions WHERE report_id = ? ORDER BY version", (report_id,)
    )


def _current_version(db: sqlite_utils.Database, report_id: str) -> dict[str, Any]:
    return builder.one(
        db,
        "SELECT * FROM report_versions WHERE report_id = ? ORDER BY version DESC LIMIT 1",
        (report_id,),
        f"versions of report {report_id}",
    )


def load(db: sqlite_utils.Database, report_id: str) -> StoredReport:
    """The report and its current version (not audited: callers audit their own use)."""
    row = _report_row(db, report_id)
    version = _current_version(db, report_id)
    content = ReportContent.model_validate_json(version["content"])
    return StoredReport(row, version, content, user_name(db, row["signed_by"]))


def verification_out(report: StoredReport) -> VerificationOut:
    found = report.verification
    return VerificationOut(
        state=found.state,
        verifier_name=found.verifier_name,
        verified_at=found.verified_at,
        notice=found.notice(report.content.disclaimer),
    )


def _out(report: StoredReport) -> ReportOut:
    row = report.row
    return ReportOut(
        id=row["id"],
        study_id=row["study_id"],
        analysis_id=row["analysis_id"],
        status=row["status"],
        current_version=row["current_version"],
        verification_flag=report.verification.dicom_flag,
        verification=verification_out(report),
        created_by=row["created_by"],
        signed_by=row["signed_by"],
        signer_name=report.signer_name,
        signed_at=row["signed_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        hash=report.version["hash"],
        content=report.content,
    )


def _append_version(
    db: sqlite_utils.Database,
    actor: Actor,
    action: str,
    report_id: str,
    *,
    version: int,
    status: str,
    kind: str,
    content: ReportContent,
    prev_hash: str,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Insert one version and its audit row (inside the caller's transaction); ``action`` must
    be one of :data:`~appliance.reports.verify.VERSION_ACTIONS`, the actions the chain check
    reads back."""
    if action not in VERSION_ACTIONS:
        raise ValueError(f"{action} is not a version-writing action")
    row: dict[str, Any] = {
        "id": new_id(),
        "report_id": report_id,
        "version": version,
        "status": status,
        "kind": kind,
        "content": content.model_dump_json(),
        "author_id": actor.user_id,
        "created_at": now_iso(),
        "prev_hash": prev_hash,
    }
    row["hash"] = version_digest(row)
    db.table("report_versions").insert(row)
    audit.record(
        db,
        actor,
        action,
        object_type="report",
        object_id=report_id,
        detail={"version": version, "hash": row["hash"], "status": status, **(detail or {})},
    )
    return row


def create(
    db: sqlite_utils.Database,
    store: ObjectStore,
    data: ReportCreate,
    actor: Actor,
    *,
    facility: str,
) -> ReportOut:
    """Draft version 1: from the analysis, or an empty structured draft without one."""
    require(actor, ReportAction.CREATE_DRAFT)
    content = builder.draft(
        db,
        store,
        data.study_id,
        facility=facility,
        analysis_id=data.analysis_id,
        include_ai_disclaimer=data.include_ai_disclaimer,
    )
    now = now_iso()
    report: dict[str, Any] = {
        "id": new_id(),
        "study_id": data.study_id,
        "analysis_id": data.analysis_id,
        "status": "draft",
        "current_version": 1,
        "created_by": actor.user_id,
        "signed_by": None,
        "signed_at": None,
        "created_at": now,
        "updated_at": now,
    }
    with transaction(db):
        db.table("reports").insert(report)
        version = _append_version(
            db,
            actor,
            "report.create",
            report["id"],
            version=1,
            status="draft",
            kind="create",
            content=content,
            prev_hash=GENESIS,
            detail={
                "study_id": data.study_id,
                "analysis_id": data.analysis_id,
                "findings": len(content.findings),
            },
        )
    return _out(StoredReport(report, version, content, None))


def get(db: sqlite_utils.Database, report_id: str, actor: Actor) -> ReportOut:
    result: ReportOut = audit.audited_read(
        db,
        actor,
        "report.read",
        "report",
        report_id,
        lambda: _out(load(db, report_id)),
        lambda r: {"version": r.current_version, "study_id": r.study_id},
    )
    return result


def for_study(db: sqlite_utils.Database, study_id: str, actor: Actor) -> list[ReportSummary]:
    """The study's reports, newest first."""

    def read() -> list[ReportSummary]:
        builder.one(db, "SELECT id FROM studies WHERE id = ?", (study_id,), f"study {study_id}")
        found = builder.rows(
            db,
            "SELECT id, study_id, analysis_id, status, current_version, signed_at, created_at,"
            " updated_at FROM reports WHERE study_id = ? ORDER BY created_at DESC, id",
            (study_id,),
        )
        return [ReportSummary(**r) for r in found]

    result: list[ReportSummary] = audit.audited_read(
        db,
        actor,
        "report.list",
        "study",
        study_id,
        read,
        lambda found: {"returned": [r.id for r in found]},
    )
    return result


def versions(db: sqlite_utils.Database, report_id: str, actor: Actor) -> ReportVersions:
    """Every version, oldest first, each with its changes against the one before; the chain
    is checked on the way."""

    def read() -> ReportVersions:
        _report_row(db, report_id)
        problems = verify_report(db, report_id)
        items: list[ReportVersionOut] = []
        previous: ReportContent | None = None
        for row in _version_rows(db, report_id):
            content = ReportContent.model_validate_json(row["content"])
            items.append(
                ReportVersionOut(
                    version=row["version"],
                    status=row["status"],
                    kind=row["kind"],
                    author_id=row["author_id"],
                    author_name=user_name(db, row["author_id"]),
                    created_at=row["created_at"],
                    prev_hash=row["prev_hash"],
                    hash=row["hash"],
                    content=content,
                    changes=diff.changes(previous, content),
                )
            )
            previous = content
        return ReportVersions(
            report_id=report_id,
            chain_ok=not problems,
            chain_problem="; ".join(p.line() for p in problems) or None,
            versions=items,
        )

    result: ReportVersions = audit.audited_read(
        db,
        actor,
        "report.versions",
        "report",
        report_id,
        read,
        lambda found: {"versions": len(found.versions), "chain_ok": found.chain_ok},
    )
    return result


def _edited_findings(current: list[ReportFinding], data: ReportUpdate) -> list[ReportFinding]:
    assert data.findings is not None
    by_id = {f.id: f for f in current}
    used = set(by_id)
    result: list[ReportFinding] = []
    for edit in data.findings:
        kept = by_id.get(edit.id) if edit.id else None
        if edit.id and kept is None:
            raise InvalidInput(f"no finding {edit.id} in the current version")
        if kept is not None:
            same = (kept.location, kept.text, kept.impression, kept.measurements) == (
                edit.location,
                edit.text,
                edit.impression,
                edit.measurements,
            )
            result.append(
                kept.model_copy(
                    update={
                        "location": edit.location,
                        "text": edit.text,
                        "impression": edit.impression,
                        "measurements": edit.measurements,
                        "review_state": kept.review_state if same else "edited",
                    }
                )
            )
        else:
            number = len(used) + 1
            while f"f{number}" in used:
                number += 1
            used.add(f"f{number}")
            result.append(
                ReportFinding(
                    id=f"f{number}",
                    source="radiologist",
                    location=edit.location,
                    text=edit.text,
                    impression=edit.impression,
                    measurements=edit.measurements,
                    review_state="accepted",
                )
            )
    return result


def _refuse(
    db: sqlite_utils.Database, actor: Actor, action: str, report_id: str, error: AppError
) -> None:
    audit.record(
        db,
        actor,
        action,
        object_type="report",
        object_id=report_id,
        outcome="refused",
        detail={"reason": error.detail, "status": error.status},
    )


def update(
    db: sqlite_utils.Database, report_id: str, data: ReportUpdate, actor: Actor
) -> ReportOut:
    """Save a new version: section edits of a draft, or an addendum to a signed report."""
    error: AppError | None = None
    with transaction(db):
        report = load(db, report_id)
        action = "report.addendum" if report.signed else "report.update"
        try:
            if data.expected_version is not None and data.expected_version != int(
                report.row["current_version"]
            ):
                raise Conflict(
                    f"the report is at version {report.row['current_version']}, "
                    f"not {data.expected_version}: reload it",
                    code="report_stale",
                )
            require(actor, ReportAction.ADDENDUM if report.signed else ReportAction.EDIT_DRAFT)
            if report.signed:
                content, status, kind = _addendum(report, data, actor, db)
            else:
                if data.addendum is not None:
                    raise InvalidInput("a draft is edited directly; addenda are for signed reports")
                content = report.content.model_copy(deep=True)
                for field in data.section_fields():
                    if field == "findings":
                        content.findings = _edited_findings(report.content.findings, data)
                    else:
                        setattr(content, field, getattr(data, field) or None)
                if (
                    "impression" in data.section_fields()
                    and content.impression_review == "pending"
                    and content.impression != report.content.impression
                ):
                    content.impression_review = "edited"
                status, kind = "draft", "edit"
        except AppError as exc:
            _refuse(db, actor, action, report_id, exc)
            error = exc
        else:
            version = int(report.row["current_version"]) + 1
            row = _append_version(
                db,
                actor,
                action,
                report_id,
                version=version,
                status=status,
                kind=kind,
                content=content,
                prev_hash=report.version["hash"],
                detail={"sections": sorted(data.section_fields())} if kind == "edit" else None,
            )
            head = {"status": status, "current_version": version, "updated_at": row["created_at"]}
            db.table("reports").update(report_id, head)
            updated = StoredReport({**report.row, **head}, row, content, report.signer_name)
    if error is not None:
        raise error
    return _out(updated)


def _addendum(
    report: StoredReport, data: ReportUpdate, actor: Actor, db: sqlite_utils.Database
) -> tuple[ReportContent, str, str]:
    if data.section_fields():
        raise Conflict(
            "the report is signed and its content is locked: send the change as an addendum",
            code="report_signed",
        )
    if data.addendum is None:
        raise InvalidInput("a signed report takes an addendum text")
    content = report.content.model_copy(deep=True)
    version = int(report.row["current_version"]) + 1
    content.addenda.append(
        Addendum(
            version=version,
            text=data.addendum,
            author_id=actor.user_id,
            author_name=user_name(db, actor.user_id) or actor.name,
            created_at=now_iso(),
        )
    )
    return content, "amended", "addendum"


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
            if data.expected_version is not None and data.expected_version != int(
                report.row["current_version"]
            ):
                raise Conflict(
                    f"the report is at version {report.row['current_version']}, "
                    f"not {data.expected_version}: reload it",
                    code="report_stale",
                )
            decisions.require_decided(report.content)
        except AppError as exc:
            _refuse(db, actor, "report.finalize", report_id, exc)
            error = exc
        else:
            content = report.content.model_copy(deep=True)
            for finding in content.findings:
                if finding.review_state == "pending":
                    finding.review_state = "accepted"
            version = int(report.row["current_version"]) + 1
            row = _append_version(
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
    return _out(updated)


def latest_for_study(db: sqlite_utils.Database, study_id: str) -> str | None:
    row = db.execute(
        "SELECT id FROM reports WHERE study_id = ? ORDER BY updated_at DESC, id LIMIT 1",
        (study_id,),
    ).fetchone()
    return str(row[0]) if row else None


def version_history(db: sqlite_utils.Database, report_id: str) -> list[dict[str, Any]]:
    """Version rows without content (for exports), oldest first."""
    return [
        {
            "version": r["version"],
            "status": r["status"],
            "kind": r["kind"],
            "author_id": r["author_id"],
            "author_name": user_name(db, r["author_id"]),
            "created_at": r["created_at"],
            "prev_hash": r["prev_hash"],
            "hash": r["hash"],
        }
        for r in _version_rows(db, report_id)
    ]


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
            _refuse(db, actor, "report.review", report_id, exc)
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
            row = _append_version(
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
    return _out(updated)


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
            _refuse(db, actor, "report.handover", report_id, error)
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
