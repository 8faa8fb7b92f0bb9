"""Stored reports: the report row and its current version (``StoredReport``), the response
model, and the append of a hash-linked version with its audit row (PS3.3-style immutable
versions: rows are never updated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.rows import fetch_all, fetch_found, new_id, now_iso
from appliance.errors import AppError, Conflict
from appliance.reports.models import (
    ReportContent,
    ReportOut,
    VerificationOut,
)
from appliance.reports.verification import Verification
from appliance.reports.verify import VERSION_ACTIONS, version_digest

SIGNED = ("final", "amended")


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


def report_row(db: sqlite_utils.Database, report_id: str) -> dict[str, Any]:
    """The ``reports`` row; NotFound when unknown."""
    return fetch_found(
        db, "SELECT * FROM reports WHERE id = ?", (report_id,), f"report {report_id}"
    )


def version_rows(db: sqlite_utils.Database, report_id: str) -> list[dict[str, Any]]:
    """Every version row of a report, oldest first."""
    return fetch_all(
        db, "SELECT * FROM report_versions WHERE report_id = ? ORDER BY version", (report_id,)
    )


def _current_version(db: sqlite_utils.Database, report_id: str) -> dict[str, Any]:
    return fetch_found(
        db,
        "SELECT * FROM report_versions WHERE report_id = ? ORDER BY version DESC LIMIT 1",
        (report_id,),
        f"versions of report {report_id}",
    )


def load(db: sqlite_utils.Database, report_id: str) -> StoredReport:
    """The report and its current version (not audited: callers audit their own use)."""
    row = report_row(db, report_id)
    version = _current_version(db, report_id)
    content = ReportContent.model_validate_json(version["content"])
    return StoredReport(row, version, content, user_name(db, row["signed_by"]))


def verification_out(report: StoredReport) -> VerificationOut:
    """The verification state of a report as the API shows it."""
    found = report.verification
    return VerificationOut(
        state=found.state,
        verifier_name=found.verifier_name,
        verified_at=found.verified_at,
        notice=found.notice(report.content.disclaimer, lang=report.content.language),
    )


def check_version(report: StoredReport, expected: int | None) -> None:
    """Conflict when the caller saw another version than the current one (``expected_version``:
    an optimistic lock against two people editing at once)."""
    if expected is not None and expected != int(report.row["current_version"]):
        raise Conflict(
            f"the report is at version {report.row['current_version']}, not {expected}: reload it",
            code="report_stale",
        )


def report_out(report: StoredReport) -> ReportOut:
    """A stored report as the API returns it."""
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


def append_version(
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


def refuse(
    db: sqlite_utils.Database, actor: Actor, action: str, report_id: str, error: AppError
) -> None:
    """Audit a refused change of a report with the reason."""
    audit.record(
        db,
        actor,
        action,
        object_type="report",
        object_id=report_id,
        outcome="refused",
        detail={"reason": error.detail, "status": error.status},
    )


def latest_for_study(db: sqlite_utils.Database, study_id: str) -> str | None:
    """The id of the study's most recently updated report, if any."""
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
        for r in version_rows(db, report_id)
    ]
