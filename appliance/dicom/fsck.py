"""``radiant fsck``: do the object store, the index and the audit trail agree?

Checks that every ``instances`` row stored locally has its file with the recorded size and
SHA-256, that every file under the store's ``dicom/`` is indexed, that no ``.tmp-`` partial write
is left, that every quarantine row has its file (same size and hash) and every quarantined file
its row, and that the audit hash chain and every report's version chain
(:mod:`appliance.reports.verify`) are intact.

Repair quarantines files that are not indexed (then deletes them from the store) and removes
partials. It never deletes an index row or a quarantined file: a missing or altered file is
reported with its instance id for a person to restore from the replica. Files younger than
``grace_s`` are left alone because they may belong to an ingest in flight (the file is written
just before its index row is committed); start-up :func:`appliance.dicom.recovery.recover`, which
runs when nothing is in flight, handles those.

:func:`appliance.dicom.store_index.walk_index` is the one comparison of store and index, shared
with start-up recovery.
"""

from __future__ import annotations

import enum
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.dicom.store_index import quarantine_orphan, walk_index
from appliance.logs import get_logger
from appliance.reports.verify import verify_all as verify_reports
from appliance.storage.service import (
    CHUNK_SIZE,
    TEMP_PREFIX,
    ObjectStore,
    UnsafeKey,
)
from radiant_common.durable import fsync_dir

if TYPE_CHECKING:
    from appliance.context import AppContext  # the container only: no runtime import

log = get_logger("radiant.fsck")
ACTOR = Actor.system("fsck")
NOT_INDEXED = "not indexed (found by fsck)"
GRACE_S = 300.0


# -- the check ------------------------------------------------------------------------------


class Kind(enum.StrEnum):
    MISSING = "missing file"
    SIZE_MISMATCH = "size mismatch"
    HASH_MISMATCH = "hash mismatch"
    UNREADABLE = "unreadable file"
    NOT_INDEXED = "not indexed"
    PARTIAL = "partial write"
    QUARANTINE_MISSING = "quarantined file missing"
    QUARANTINE_MISMATCH = "quarantined file altered"
    QUARANTINE_UNRECORDED = "quarantined file without a row"
    AUDIT = "audit chain broken"
    REPORT = "report chain broken"


@dataclass
class Problem:
    """One inconsistency; ``message`` is one line of ids and keys (never PHI)."""

    kind: Kind
    message: str
    key: str | None = None
    instance_id: str | None = None
    repaired: bool = False
    note: str | None = None

    def line(self) -> str:
        text = f"{self.kind.value}: {self.message}"
        if self.repaired:
            text += f" [repaired: {self.note}]" if self.note else " [repaired]"
        elif self.note:
            text += f" [{self.note}]"
        return text


@dataclass
class FsckReport:
    instances: int = 0
    files: int = 0
    quarantined: int = 0
    audit_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    repair: bool = False

    @property
    def remaining(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    @property
    def ok(self) -> bool:
        """Consistent now (after repair, when repair was asked for)."""
        return not self.remaining

    def summary(self) -> str:
        repaired = len(self.problems) - len(self.remaining)
        head = (
            f"checked {self.instances} instances, {self.files} stored files, "
            f"{self.quarantined} quarantined files, {self.audit_rows} audit rows"
        )
        if not self.problems:
            return f"{head}: consistent"
        tail = f"{len(self.problems)} problems"
        if self.repair:
            tail += f", {repaired} repaired, {len(self.remaining)} left"
        return f"{head}: {tail}"


def fsck(
    ctx: AppContext,
    *,
    repair: bool = False,
    actor: Actor = ACTOR,
    grace_s: float = GRACE_S,
) -> FsckReport:
    """Check (and with ``repair`` fix what can be fixed safely); see the module docstring."""
    db = ctx.pool.get()
    report = FsckReport(repair=repair)
    _check_instances(db, ctx.store, report)
    partials = _partials(ctx.store)
    for path in partials:
        rel = path.relative_to(ctx.store.root).as_posix()
        report.problems.append(Problem(Kind.PARTIAL, f"{rel} (an interrupted write)", key=rel))
    _check_quarantine(db, ctx.quarantine.root, report)
    chain = audit.verify(db)
    report.audit_rows = chain.rows
    if not chain.ok:
        report.problems.append(Problem(Kind.AUDIT, f"at row {chain.first_bad_id}: {chain.reason}"))
    for broken in verify_reports(db)[1]:
        report.problems.append(Problem(Kind.REPORT, broken.line()))
    if repair:
        _repair(ctx, db, report, actor, grace_s)
    log.info(
        "fsck_done",
        instances=report.instances,
        problems=len(report.problems),
        remaining=len(report.remaining),
        repair=repair,
    )
    return report


def _check_instances(db: sqlite_utils.Database, store: ObjectStore, report: FsckReport) -> None:
    for item in walk_index(db, store):
        if item.on_disk:
            report.files += 1
        if item.instance_id is None:
            report.problems.append(
                Problem(Kind.NOT_INDEXED, f"{item.key} (no instance row names it)", key=item.key)
            )
            continue
        report.instances += 1
        if not item.local:
            continue
        where = f"instance {item.instance_id} ({item.key})"
        if not item.on_disk:
            report.problems.append(
                Problem(Kind.MISSING, where, key=item.key, instance_id=item.instance_id)
            )
            continue
        try:
            actual = store.hash_of(item.key)
        except (OSError, UnsafeKey) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unsafe key"
            report.problems.append(
                Problem(
                    Kind.UNREADABLE,
                    f"{where}: {reason}",
                    key=item.key,
                    instance_id=item.instance_id,
                )
            )
            continue
        if actual.size != item.size:
            report.problems.append(
                Problem(
                    Kind.SIZE_MISMATCH,
                    f"{where}: {actual.size} bytes on disk, {item.size} indexed",
                    key=item.key,
                    instance_id=item.instance_id,
                )
            )
        elif actual.sha256 != item.sha256:
            report.problems.append(
                Problem(
                    Kind.HASH_MISMATCH,
                    f"{where}: SHA-256 on disk differs from the index",
                    key=item.key,
                    instance_id=item.instance_id,
                )
            )


def _partials(store: ObjectStore) -> list[Path]:
    """``.tmp-*`` files anywhere in the store (interrupted or in-flight writes)."""
    found: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(store.root):
        found.extend(Path(dirpath, n) for n in sorted(filenames) if n.startswith(TEMP_PREFIX))
    return sorted(found)


def _check_quarantine(db: sqlite_utils.Database, root: Path, report: FsckReport) -> None:
    recorded: set[str] = set()
    rows = db.execute("SELECT id, storage_path, size, sha256 FROM quarantine ORDER BY id")
    for qid, storage_path, size, sha256 in rows.fetchall():
        recorded.add(str(storage_path))
        where = f"quarantine {qid} ({storage_path})"
        path = root / str(storage_path)
        if not path.resolve().is_relative_to(root.resolve()) or not path.is_file():
            report.problems.append(Problem(Kind.QUARANTINE_MISSING, where))
            continue
        report.quarantined += 1
        try:
            actual_size, actual_hash = _hash_file(path)
        except OSError as exc:
            report.problems.append(
                Problem(Kind.QUARANTINE_MISMATCH, f"{where}: {exc.strerror or 'unreadable'}")
            )
            continue
        if actual_size != size or actual_hash != sha256:
            report.problems.append(
                Problem(Kind.QUARANTINE_MISMATCH, f"{where}: size or SHA-256 differs from its row")
            )
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in sorted(filenames):
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel not in recorded:
                report.problems.append(Problem(Kind.QUARANTINE_UNRECORDED, rel))


def _hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _age_s(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None


def _repair(
    ctx: AppContext,
    db: sqlite_utils.Database,
    report: FsckReport,
    actor: Actor,
    grace_s: float,
) -> None:
    young = f"younger than {grace_s:g} s, may be an ingest in progress: not repaired"
    quarantined = removed = 0
    for problem in report.problems:
        if problem.kind is Kind.NOT_INDEXED and problem.key is not None:
            age = _age_s(ctx.store.path(problem.key))
            if age is None:
                problem.repaired = True  # gone meanwhile
                continue
            if age < grace_s:
                problem.note = young
                continue
            indexed = db.execute(
                "SELECT 1 FROM instances WHERE storage_key = ?", (problem.key,)
            ).fetchone()
            if indexed is not None:  # committed since the check
                problem.repaired = True
                continue
            qid = quarantine_orphan(
                ctx, db, problem.key, reason=NOT_INDEXED, source="fsck", actor=actor
            )
            problem.repaired = True
            problem.note = f"quarantine {qid}"
            quarantined += 1
        elif problem.kind is Kind.PARTIAL:
            path = ctx.store.root / str(problem.key)
            age = _age_s(path)
            if age is not None and age < grace_s:
                problem.note = young
                continue
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
            problem.repaired = True
            problem.note = "removed"
            removed += 1
        elif problem.kind in (Kind.MISSING, Kind.SIZE_MISMATCH, Kind.HASH_MISMATCH):
            problem.note = "restore this instance from the replica"
    audit.record(
        db,
        actor,
        "fsck.repair",
        outcome="success" if report.ok else "partial",
        detail={
            "orphans_quarantined": quarantined,
            "partials_removed": removed,
            "problems_left": len(report.remaining),
        },
    )

