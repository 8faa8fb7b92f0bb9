"""Audited reads of reports: one report, a study's list, and every version with its changes
(the hash chain checked on the way).
"""

from __future__ import annotations

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.rows import fetch_all, fetch_found
from appliance.reports import diff
from appliance.reports.history_models import ReportVersionOut, ReportVersions
from appliance.reports.models import ReportContent, ReportOut, ReportSummary
from appliance.reports.store import (
    load,
    report_out,
    report_row,
    user_name,
    version_rows,
)
from appliance.reports.verify import verify_report


def get(db: sqlite_utils.Database, report_id: str, actor: Actor) -> ReportOut:
    """One report with its current version; audited ``report.read``."""
    result: ReportOut = audit.audited_read(
        db,
        actor,
        "report.read",
        "report",
        report_id,
        lambda: report_out(load(db, report_id)),
        lambda r: {"version": r.current_version, "study_id": r.study_id},
    )
    return result


def for_study(db: sqlite_utils.Database, study_id: str, actor: Actor) -> list[ReportSummary]:
    """The study's reports, newest first."""

    def read() -> list[ReportSummary]:
        fetch_found(db, "SELECT id FROM studies WHERE id = ?", (study_id,), f"study {study_id}")
        found = fetch_all(
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
        report_row(db, report_id)
        problems = verify_report(db, report_id)
        items: list[ReportVersionOut] = []
        previous: ReportContent | None = None
        for row in version_rows(db, report_id):
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
