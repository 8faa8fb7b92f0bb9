"""The job queue on the ``jobs`` table: enqueue, claim, progress, finish, fail, cancel, recover.

Plain functions over a database handle; the :mod:`appliance.jobs.runner` calls them from its
worker threads. Every state change is one write transaction. Creation, cancellation, failure
and recovery are audited (``job.create``, ``job.cancel``, ``job.fail``, ``job.requeue``) with
ids only; a job's payload and result hold ids, never PHI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import fetch_one, new_id, now_iso
from appliance.errors import Conflict, NotFound
from appliance.jobs.models import FINISHED, INTERRUPTED, Job, JobOut, JobStatus

SYSTEM = Actor.system("jobs")
_ERROR_MAX = 2000
_IDS_PER_QUERY = 500  # bound parameters per query, well under SQLite's limit


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def _row(db: sqlite_utils.Database, job_id: str) -> dict[str, Any] | None:
    return fetch_one(db, "SELECT * FROM jobs WHERE id = ?", (job_id,))


def _out(row: dict[str, Any]) -> JobOut:
    return JobOut(
        id=row["id"],
        kind=row["kind"],
        status=JobStatus(row["status"]),
        stage=row["stage"],
        progress=min(1.0, max(0.0, float(row["progress"] or 0.0))),
        attempts=int(row["attempts"]),
        error=row["error"],
        cancel_requested=bool(row["cancel_requested"]),
        payload=json.loads(row["payload"] or "{}"),
        result=json.loads(row["result"]) if row["result"] else None,
        created_at=row["created_at"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        finished_at=row["finished_at"],
    )


def get(db: sqlite_utils.Database, job_id: str) -> JobOut:
    """The job ``job_id``; NotFound when there is none."""
    row = _row(db, job_id)
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return _out(row)


@dataclass(frozen=True)
class Enqueued:
    """The job that holds the work: ``created`` is False when an identical queued one existed."""

    job: JobOut
    created: bool


def enqueue(
    db: sqlite_utils.Database,
    kind: str,
    payload: dict[str, Any],
    actor: Actor,
    *,
    dedupe: bool = True,
) -> Enqueued:
    """Queue a job of ``kind``; audited ``job.create``.

    With ``dedupe`` a job of the same kind and payload that is still ``queued`` is returned
    instead of a second one (a running one is not: it may be working on older input).
    """
    if not kind or len(kind) > 64:
        raise ValueError("a job kind is 1 to 64 characters")
    text = _canonical(payload)
    with transaction(db):
        if dedupe:
            found = db.execute(
                "SELECT id FROM jobs WHERE kind = ? AND status = 'queued' AND payload = ?"
                " ORDER BY created_at LIMIT 1",
                (kind, text),
            ).fetchone()
            if found is not None:
                row = _row(db, found[0])
                assert row is not None
                return Enqueued(_out(row), created=False)
        job_id = new_id()
        db.execute(
            "INSERT INTO jobs (id, kind, payload, status, progress, attempts, created_at)"
            " VALUES (?, ?, ?, 'queued', 0, 0, ?)",
            (job_id, kind, text, now_iso()),
        )
        audit.record(
            db, actor, "job.create", object_type="job", object_id=job_id, detail={"kind": kind}
        )
        row = _row(db, job_id)
    assert row is not None
    return Enqueued(_out(row), created=True)


def claim(db: sqlite_utils.Database, kind: str) -> Job | None:
    """Take the oldest queued job of ``kind`` and mark it running (attempts + 1), or None.

    ``BEGIN IMMEDIATE`` holds the write lock from the read to the update, so two workers (even
    in two processes) never claim the same job.
    """
    with transaction(db):
        found = db.execute(
            "SELECT id, payload, attempts FROM jobs WHERE kind = ? AND status = 'queued'"
            " ORDER BY created_at, id LIMIT 1",
            (kind,),
        ).fetchone()
        if found is None:
            return None
        now = now_iso()
        db.execute(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?,"
            " heartbeat_at = ?, stage = 'started', progress = 0, error = NULL WHERE id = ?",
            (now, now, found[0]),
        )
    return Job(id=found[0], kind=kind, payload=json.loads(found[1] or "{}"), attempts=found[2] + 1)


def progress(db: sqlite_utils.Database, job_id: str, stage: str, fraction: float) -> bool:
    """Record the stage and progress (clamped to 0..1) of a running job, with a heartbeat.

    Returns True when the job has been asked to cancel.
    """
    value = min(1.0, max(0.0, float(fraction)))
    with transaction(db):
        db.execute(
            "UPDATE jobs SET stage = ?, progress = ?, heartbeat_at = ?"
            " WHERE id = ? AND status = 'running'",
            (stage[:200], value, now_iso(), job_id),
        )
        row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])


def heartbeat(db: sqlite_utils.Database, job_ids: list[str]) -> set[str]:
    """Stamp ``heartbeat_at`` of these running jobs; returns those asked to cancel."""
    if not job_ids:
        return set()
    marks = ", ".join("?" for _ in job_ids)
    with transaction(db):
        db.execute(
            f"UPDATE jobs SET heartbeat_at = ? WHERE status = 'running' AND id IN ({marks})",  # noqa: S608
            [now_iso(), *job_ids],
        )
        rows = db.execute(
            f"SELECT id FROM jobs WHERE cancel_requested = 1 AND id IN ({marks})",  # noqa: S608
            job_ids,
        ).fetchall()
    return {r[0] for r in rows}


def finish(db: sqlite_utils.Database, job_id: str, result: dict[str, Any] | None = None) -> None:
    """Mark a running job done with its result (ids only)."""
    now = now_iso()
    with transaction(db):
        db.execute(
            "UPDATE jobs SET status = 'done', progress = 1, stage = 'done', result = ?,"
            " finished_at = ?, heartbeat_at = ? WHERE id = ? AND status = 'running'",
            (_canonical(result) if result is not None else None, now, now, job_id),
        )


def fail(
    db: sqlite_utils.Database,
    job_id: str,
    reason: str,
    *,
    actor: Actor = SYSTEM,
    code: str = "error",
) -> None:
    """Mark a job failed with ``reason`` (kept in the row); audited ``job.fail`` with ``code``.

    The audit row carries the short ``code`` (an exception class name), not the reason text,
    which may quote file names or values.
    """
    now = now_iso()
    with transaction(db):
        row = db.execute("SELECT kind FROM jobs WHERE id = ?", (job_id,)).fetchone()
        db.execute(
            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, heartbeat_at = ?"
            " WHERE id = ? AND status IN ('queued', 'running')",
            (reason[:_ERROR_MAX], now, now, job_id),
        )
        audit.record(
            db,
            actor,
            "job.fail",
            object_type="job",
            object_id=job_id,
            outcome="failed",
            detail={"kind": row[0] if row else None, "code": code},
        )


def mark_cancelled(db: sqlite_utils.Database, job_id: str, reason: str = "cancelled") -> None:
    """A running job stopped because it was asked to (the handler saw the flag)."""
    now = now_iso()
    with transaction(db):
        db.execute(
            "UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?, heartbeat_at = ?"
            " WHERE id = ? AND status = 'running'",
            (reason, now, now, job_id),
        )


def request_cancel(db: sqlite_utils.Database, job_id: str, actor: Actor) -> JobOut:
    """Cancel a job: a queued one at once, a running one cooperatively (its handler checks the
    flag and stops; if it finishes first, the job is done). Audited ``job.cancel``.

    Conflict (409) for a job already finished.
    """
    error: NotFound | Conflict | None = None
    with transaction(db):
        row = _row(db, job_id)
        if row is None:
            error = NotFound(f"job {job_id} not found")
            audit.record(
                db, actor, "job.cancel", object_type="job", object_id=job_id, outcome="not_found"
            )
        elif JobStatus(row["status"]) in FINISHED:
            error = Conflict(f"job {job_id} is already {row['status']}")
            audit.record(
                db,
                actor,
                "job.cancel",
                object_type="job",
                object_id=job_id,
                outcome="refused",
                detail={"status": row["status"]},
            )
        else:
            if row["status"] == JobStatus.QUEUED:
                db.execute(
                    "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, error = ?,"
                    " finished_at = ? WHERE id = ?",
                    (f"cancelled by {actor.name} before it started", now_iso(), job_id),
                )
            else:
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            audit.record(
                db,
                actor,
                "job.cancel",
                object_type="job",
                object_id=job_id,
                detail={"kind": row["kind"], "was": row["status"]},
            )
    if error is not None:
        raise error
    return get(db, job_id)


@dataclass(frozen=True)
class Recovered:
    requeued: list[str]
    failed: list[str]


def recover_interrupted(
    db: sqlite_utils.Database, may_resume: Callable[[str, int], bool]
) -> Recovered:
    """Jobs left ``running`` by a process that died: re-queue them when
    ``may_resume(kind, attempts)`` says so, else fail them with :data:`INTERRUPTED`.

    Only a runner that holds the data dir's job lock may call this (no other runner is alive,
    so every running row is an orphan). Nothing is left running and nothing is deleted.
    """
    requeued: list[str] = []
    failed: list[str] = []
    with transaction(db):
        rows = db.execute(
            "SELECT id, kind, attempts, cancel_requested FROM jobs WHERE status = 'running'"
            " ORDER BY created_at"
        ).fetchall()
        now = now_iso()
        for job_id, kind, attempts, cancel_requested in rows:
            if not cancel_requested and may_resume(kind, int(attempts)):
                db.execute(
                    "UPDATE jobs SET status = 'queued', stage = 're-queued after a restart',"
                    " progress = 0, started_at = NULL, heartbeat_at = NULL WHERE id = ?",
                    (job_id,),
                )
                audit.record(
                    db,
                    SYSTEM,
                    "job.requeue",
                    object_type="job",
                    object_id=job_id,
                    detail={"kind": kind, "attempts": attempts},
                )
                requeued.append(job_id)
            else:
                reason = INTERRUPTED if not cancel_requested else "cancelled (by a restart)"
                status = "failed" if not cancel_requested else "cancelled"
                db.execute(
                    "UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                    (status, reason, now, job_id),
                )
                if status == "failed":
                    audit.record(
                        db,
                        SYSTEM,
                        "job.fail",
                        object_type="job",
                        object_id=job_id,
                        outcome="failed",
                        detail={"kind": kind, "code": "interrupted"},
                    )
                failed.append(job_id)
    return Recovered(requeued, failed)


def latest_for(
    db: sqlite_utils.Database, kind: str, payload: dict[str, Any], statuses: tuple[str, ...]
) -> JobOut | None:
    """The newest job of ``kind`` with exactly ``payload`` in one of ``statuses``."""
    marks = ", ".join("?" for _ in statuses)
    found = db.execute(
        f"SELECT id FROM jobs WHERE kind = ? AND payload = ? AND status IN ({marks})"  # noqa: S608
        " ORDER BY created_at DESC LIMIT 1",
        (kind, _canonical(payload), *statuses),
    ).fetchone()
    if found is None:
        return None
    row = _row(db, found[0])
    return _out(row) if row else None


def cancel_requested(db: sqlite_utils.Database, job_id: str) -> bool:
    """True when someone asked job ``job_id`` to cancel (False when there is no such job)."""
    row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class EndedJob:
    """A job that ended without success: what its payload names, its status and reason."""

    subject: str
    status: str
    error: str | None


def ended_unsuccessfully(
    db: sqlite_utils.Database, kind: str, payload_key: str, subjects: list[str]
) -> list[EndedJob]:
    """Jobs of ``kind`` that ended failed or cancelled whose payload's ``payload_key`` is one of
    ``subjects`` (an analysis job's ``analysis_id``, say), one row per job."""
    if not payload_key.isidentifier():
        return []
    path = f"$.{payload_key}"
    ended: list[EndedJob] = []
    for start in range(0, len(subjects), _IDS_PER_QUERY):
        chunk = subjects[start : start + _IDS_PER_QUERY]
        marks = ", ".join("?" for _ in chunk)
        found = db.execute(
            "SELECT json_extract(payload, ?), status, error FROM jobs WHERE kind = ?"  # noqa: S608
            f" AND status IN ('failed', 'cancelled') AND json_extract(payload, ?) IN ({marks})",
            (path, kind, path, *chunk),
        ).fetchall()
        ended.extend(EndedJob(str(r[0]), str(r[1]), r[2]) for r in found)
    return ended
