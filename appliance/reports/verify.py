"""The hash chain of report versions, and its check (used by the API and ``radiant fsck``).

Each ``report_versions`` row stores ``prev_hash`` (the previous version's ``hash``, 64 zeros for
version 1) and ``hash`` = SHA-256 of the canonical JSON of its own fields, the content text
exactly as stored and ``prev_hash`` (the approach of :mod:`appliance.audit.service`).
Every version is also written to the audit log with its hash (``detail.version``,
``detail.hash``), so removing the newest versions, or rewriting a version and re-hashing the
chain after it, is caught against the audit trail, whose own chain fsck checks too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance.canonical import fields_digest
from appliance.db.rows import fetch_all

GENESIS = "0" * 64
# Every audit action that writes a version. :func:`appliance.reports.store.append_version`
# refuses any other action, so a new writer cannot forget to be listed here (a version written
# under an unlisted action would read as "written outside the appliance").
VERSION_ACTIONS = (
    "report.create",
    "report.update",
    "report.review",
    "report.finalize",
    "report.addendum",
)
_FIELDS = (
    "report_id",
    "version",
    "status",
    "kind",
    "content",
    "author_id",
    "created_at",
    "prev_hash",
)


def version_digest(row: dict[str, Any]) -> str:
    """SHA-256 (hex) of one version's canonical JSON (sorted keys, no spaces, UTF-8)."""
    return fields_digest(row, _FIELDS)


@dataclass(frozen=True)
class ChainProblem:
    """One broken link; ``message`` names ids only (never report text)."""

    report_id: str
    version: int | None
    reason: str

    def line(self) -> str:
        where = f"report {self.report_id}"
        if self.version is not None:
            where += f" version {self.version}"
        return f"{where}: {self.reason}"


def _recorded(db: sqlite_utils.Database, report_id: str) -> dict[int, str]:
    """Versions and hashes the audit log recorded for the report."""
    marks = ", ".join("?" for _ in VERSION_ACTIONS)
    rows = db.execute(
        f"SELECT detail FROM audit_log WHERE object_type = 'report' AND object_id = ?"  # noqa: S608
        f" AND outcome = 'success' AND action IN ({marks}) ORDER BY id",
        (report_id, *VERSION_ACTIONS),
    ).fetchall()
    found: dict[int, str] = {}
    for (detail,) in rows:
        try:
            data = json.loads(detail) if detail else {}
        except ValueError:
            continue
        if isinstance(data.get("version"), int) and isinstance(data.get("hash"), str):
            found[data["version"]] = data["hash"]
    return found


def verify_report(db: sqlite_utils.Database, report_id: str) -> list[ChainProblem]:
    """Check one report's versions: numbering, links, hashes, head and the audit record."""
    head = db.execute(
        "SELECT current_version, status FROM reports WHERE id = ?", (report_id,)
    ).fetchone()
    if head is None:
        return [ChainProblem(report_id, None, "no such report")]
    rows = fetch_all(
        db,
        f"SELECT {', '.join(_FIELDS)}, hash FROM report_versions"  # noqa: S608
        " WHERE report_id = ? ORDER BY version",
        (report_id,),
    )
    if not rows:
        return [ChainProblem(report_id, None, "the report has no versions")]
    prev = GENESIS
    for expected, row in enumerate(rows, start=1):
        version = int(row["version"])
        if version != expected:
            return [ChainProblem(report_id, expected, "version is missing")]
        if row["prev_hash"] != prev:
            return [
                ChainProblem(
                    report_id,
                    version,
                    "link to the previous version is broken (a version was removed or edited)",
                )
            ]
        if version_digest(row) != row["hash"]:
            return [
                ChainProblem(
                    report_id, version, "content does not match its hash (the version was edited)"
                )
            ]
        prev = str(row["hash"])
    last = rows[-1]
    problems: list[ChainProblem] = []
    if int(head[0]) != int(last["version"]) or head[1] != last["status"]:
        problems.append(
            ChainProblem(
                report_id,
                int(last["version"]),
                f"the report says version {head[0]} ({head[1]}), the chain ends at version "
                f"{last['version']} ({last['status']})",
            )
        )
    recorded = _recorded(db, report_id)
    stored = {int(r["version"]): str(r["hash"]) for r in rows}
    for version, digest in sorted(recorded.items()):
        if version not in stored:
            problems.append(
                ChainProblem(report_id, version, "the audit log recorded it but it is missing")
            )
        elif stored[version] != digest:
            problems.append(
                ChainProblem(
                    report_id, version, "its hash differs from the one the audit log recorded"
                )
            )
    for version in sorted(set(stored) - set(recorded)):
        problems.append(
            ChainProblem(
                report_id, version, "not recorded in the audit log (written outside the appliance)"
            )
        )
    return problems


def verify_all(db: sqlite_utils.Database) -> tuple[int, list[ChainProblem]]:
    """Check every report; returns (reports checked, problems)."""
    ids = [str(r[0]) for r in db.execute("SELECT id FROM reports ORDER BY created_at, id")]
    problems: list[ChainProblem] = []
    for report_id in ids:
        problems.extend(verify_report(db, report_id))
    return len(ids), problems
