"""Writing report content: the draft (from the analysis or empty), section edits of a draft as
new versions, and addenda to a signed report.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import new_id, now_iso
from appliance.errors import AppError, Conflict, InvalidInput
from appliance.reports import builder
from appliance.reports.models import (
    Addendum,
    ReportContent,
    ReportCreate,
    ReportFinding,
    ReportOut,
    ReportUpdate,
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
from appliance.reports.verify import GENESIS
from appliance.storage.service import ObjectStore


def create(
    db: sqlite_utils.Database,
    store: ObjectStore,
    data: ReportCreate,
    actor: Actor,
    *,
    facility: str,
    language: str = "en",
) -> ReportOut:
    """Draft version 1: from the analysis, or an empty structured draft without one; its
    generated text in ``data.language``, else ``language`` (the site's report language)."""
    require(actor, ReportAction.CREATE_DRAFT)
    content = builder.draft(
        db,
        store,
        data.study_id,
        facility=facility,
        analysis_id=data.analysis_id,
        include_ai_disclaimer=data.include_ai_disclaimer,
        lang=data.language or language,
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
        version = append_version(
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
                "language": content.language,
            },
        )
    return report_out(StoredReport(report, version, content, None))


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


def update(
    db: sqlite_utils.Database, report_id: str, data: ReportUpdate, actor: Actor
) -> ReportOut:
    """Save a new version: section edits of a draft, or an addendum to a signed report."""
    error: AppError | None = None
    with transaction(db):
        report = load(db, report_id)
        action = "report.addendum" if report.signed else "report.update"
        try:
            check_version(report, data.expected_version)
            require(actor, ReportAction.ADDENDUM if report.signed else ReportAction.EDIT_DRAFT)
            if report.signed:
                content, status, kind = _addendum(report, data, actor, db)
            else:
                if data.addendum is not None:
                    raise InvalidInput("a draft is edited directly; addenda are for signed reports")
                content = report.content.model_copy(deep=True)
                if data.language is not None:
                    content = builder.relanguage(content, data.language)
                for field in data.section_fields() - {"language"}:
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
            refuse(db, actor, action, report_id, exc)
            error = exc
        else:
            version = int(report.row["current_version"]) + 1
            row = append_version(
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
    return report_out(updated)


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
