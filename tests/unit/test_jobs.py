"""The persisted job queue and its runner, on a real SQLite file: enqueue, claim, progress,
finish, failure reasons, cancellation, crash recovery, one-at-a-time kinds, and a handler that
raises never stopping its worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from appliance.audit.models import Actor
from appliance.db.connection import ConnectionPool
from appliance.db.migrate import apply_migrations
from appliance.errors import Conflict, NotFound
from appliance.jobs import service
from appliance.jobs.models import INTERRUPTED, Job, JobFailed, JobOut, JobStatus
from appliance.jobs.runner import JobContext, JobRunner

ACTOR = Actor(name="tech", role="technician", user_id="u1")
WAIT_S = 20.0  # an upper bound for waiting on a worker thread, never asserted on


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[ConnectionPool]:
    pool = ConnectionPool(tmp_path / "radiant.db")
    apply_migrations(pool.get())
    yield pool
    pool.close_all()


@pytest.fixture
def db(pool: ConnectionPool) -> sqlite_utils.Database:
    return pool.get()


@pytest.fixture
def runners(pool: ConnectionPool, tmp_path: Path) -> Iterator[Callable[..., JobRunner]]:
    """Make runners (fast polling, the test's lock file); all are stopped at the end."""
    made: list[JobRunner] = []

    def make(**kinds: dict[str, Any]) -> JobRunner:
        runner = JobRunner(pool, lock_path=tmp_path / "jobs.lock", poll_s=0.02, heartbeat_s=0.05)
        for kind, spec in kinds.items():
            runner.register(kind, **spec)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.stop(timeout=10)


def wait_for(db: sqlite_utils.Database, job_id: str, *statuses: JobStatus) -> JobOut:
    """Poll the row until it reaches one of ``statuses`` (bounded; fails the test otherwise)."""
    wanted = set(statuses) or {JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED}
    deadline = time.monotonic() + WAIT_S
    while True:
        job = service.get(db, job_id)
        if job.status in wanted:
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} stayed {job.status} (wanted {sorted(wanted)})")
        time.sleep(0.01)


def actions(db: sqlite_utils.Database) -> list[tuple[str, str | None, str]]:
    return [
        (r[0], r[1], r[2])
        for r in db.execute("SELECT action, object_id, outcome FROM audit_log ORDER BY id")
    ]


def test_enqueue_claim_progress_finish(db: sqlite_utils.Database) -> None:
    queued = service.enqueue(db, "volume", {"series_id": "s1"}, ACTOR)
    assert queued.created and queued.job.status is JobStatus.QUEUED
    assert queued.job.payload == {"series_id": "s1"} and queued.job.attempts == 0
    again = service.enqueue(db, "volume", {"series_id": "s1"}, ACTOR)
    assert not again.created and again.job.id == queued.job.id  # the queued one is reused
    assert service.claim(db, "analysis") is None

    job = service.claim(db, "volume")
    assert job == Job(id=queued.job.id, kind="volume", payload={"series_id": "s1"}, attempts=1)
    assert service.claim(db, "volume") is None  # claimed once only
    running = service.get(db, job.id)
    assert running.status is JobStatus.RUNNING and running.started_at and running.heartbeat_at

    assert service.progress(db, job.id, "reading files", 0.25) is False
    assert service.progress(db, job.id, "clamped", 7.0) is False
    shown = service.get(db, job.id)
    assert (shown.stage, shown.progress) == ("clamped", 1.0)

    service.finish(db, job.id, {"volume_ids": ["v1", "v2"]})
    done = service.get(db, job.id)
    assert done.status is JobStatus.DONE and done.result == {"volume_ids": ["v1", "v2"]}
    assert done.progress == 1.0 and done.finished_at and done.error is None
    # a finished job is not deduplicated against
    assert service.enqueue(db, "volume", {"series_id": "s1"}, ACTOR).created
    assert ("job.create", job.id, "success") in actions(db)
    with pytest.raises(NotFound):
        service.get(db, "nope")


def test_a_failure_keeps_its_reason_and_the_worker_survives_exceptions(
    db: sqlite_utils.Database, runners: Callable[..., JobRunner]
) -> None:
    seen: list[str] = []

    def handler(job: Job, ctx: JobContext) -> dict[str, Any] | None:
        seen.append(job.payload["n"])
        ctx.progress("working", 0.5)
        if job.payload["n"] == "bad-input":
            raise JobFailed("series 42 has no instances")
        if job.payload["n"] == "bug":
            raise RuntimeError("boom")
        return {"n": job.payload["n"]}

    runner = runners(work={"handler": handler})
    runner.start()
    ids = [runner.enqueue("work", {"n": n}, ACTOR).job.id for n in ("bad-input", "bug", "ok")]
    failed, crashed, ok = (wait_for(db, job_id) for job_id in ids)
    assert failed.status is JobStatus.FAILED and failed.error == "series 42 has no instances"
    assert crashed.status is JobStatus.FAILED and crashed.error == "RuntimeError: boom"
    assert ok.status is JobStatus.DONE and ok.result == {"n": "ok"}
    assert seen == ["bad-input", "bug", "ok"]  # one worker, still alive after two failures
    assert runner.working
    fails = [
        json.loads(r[0])
        for r in db.execute("SELECT detail FROM audit_log WHERE action = 'job.fail' ORDER BY id")
    ]
    # the audit row names the kind of failure, not its text
    assert fails == [
        {"kind": "work", "code": "JobFailed"},
        {"kind": "work", "code": "RuntimeError"},
    ]


def test_cancel_queued_running_and_finished_jobs(
    db: sqlite_utils.Database, runners: Callable[..., JobRunner]
) -> None:
    started = threading.Event()

    def patient(job: Job, ctx: JobContext) -> None:
        started.set()
        while True:  # a long job that checks its flag between steps
            ctx.check_cancelled()
            time.sleep(0.005)

    queued = service.enqueue(db, "slow", {"n": 1}, ACTOR).job
    cancelled = service.request_cancel(db, queued.id, ACTOR)
    assert cancelled.status is JobStatus.CANCELLED and "before it started" in (
        cancelled.error or ""
    )

    runner = runners(slow={"handler": patient})
    runner.start()
    job = runner.enqueue("slow", {"n": 2}, ACTOR).job
    assert started.wait(WAIT_S)
    asked = service.request_cancel(db, job.id, ACTOR)
    assert asked.status is JobStatus.RUNNING and asked.cancel_requested
    # the flag reaches the handler through the heartbeat (as from another process)
    stopped = wait_for(db, job.id)
    assert stopped.status is JobStatus.CANCELLED

    with pytest.raises(Conflict, match="already cancelled"):
        service.request_cancel(db, job.id, ACTOR)
    with pytest.raises(NotFound):
        service.request_cancel(db, "missing", ACTOR)
    outcomes = [(a, o) for a, _, o in actions(db) if a == "job.cancel"]
    assert outcomes == [
        ("job.cancel", "success"),
        ("job.cancel", "success"),
        ("job.cancel", "refused"),
        ("job.cancel", "not_found"),
    ]


def _left_running(db: sqlite_utils.Database, kind: str, attempts: int) -> str:
    """A row as a crashed process leaves it: running, heartbeat long ago."""
    job_id = service.enqueue(db, kind, {"k": kind, "a": attempts}, ACTOR).job.id
    db.execute(
        "UPDATE jobs SET status = 'running', attempts = ?, started_at = ?, heartbeat_at = ?,"
        " stage = 'halfway', progress = 0.5 WHERE id = ?",
        (attempts, "2020-01-01T00:00:00.000000Z", "2020-01-01T00:00:05.000000Z", job_id),
    )
    return job_id


def test_jobs_left_running_by_a_crash_are_requeued_or_failed(
    db: sqlite_utils.Database, runners: Callable[..., JobRunner]
) -> None:
    resumable = _left_running(db, "volume", attempts=1)
    exhausted = _left_running(db, "volume", attempts=3)
    fragile = _left_running(db, "analysis", attempts=1)
    unknown = _left_running(db, "retired-kind", attempts=1)
    ran: list[int] = []

    def build(job: Job, ctx: JobContext) -> dict[str, Any]:
        ran.append(job.attempts)
        return {"ok": True}

    def analyse(job: Job, ctx: JobContext) -> None:
        raise AssertionError("a non-resumable job must not run again")

    runner = runners(
        volume={"handler": build, "resumable": True, "max_attempts": 3},
        analysis={"handler": analyse},
    )
    runner.start()
    assert runner.recovered is not None
    assert runner.recovered.requeued == [resumable]
    assert sorted(runner.recovered.failed) == sorted([exhausted, fragile, unknown])

    assert wait_for(db, resumable).status is JobStatus.DONE
    assert ran == [2]  # the second attempt
    for job_id in (exhausted, fragile, unknown):
        job = service.get(db, job_id)
        assert job.status is JobStatus.FAILED and job.error == INTERRUPTED
    running = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()[0]
    assert running == 0
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 4  # nothing vanished
    logged = actions(db)
    assert ("job.requeue", resumable, "success") in logged
    assert ("job.fail", fragile, "failed") in logged


def test_one_at_a_time_per_kind_and_concurrency_when_asked(
    db: sqlite_utils.Database, runners: Callable[..., JobRunner]
) -> None:
    release = threading.Event()
    lock = threading.Lock()
    running: dict[str, int] = {"serial": 0, "parallel": 0}
    peak: dict[str, int] = {"serial": 0, "parallel": 0}

    def blocking(job: Job, ctx: JobContext) -> None:
        with lock:
            running[job.kind] += 1
            peak[job.kind] = max(peak[job.kind], running[job.kind])
        release.wait(WAIT_S)
        with lock:
            running[job.kind] -= 1

    runner = runners(serial={"handler": blocking}, parallel={"handler": blocking, "concurrency": 2})
    runner.start()
    serial = [runner.enqueue("serial", {"n": n}, ACTOR).job.id for n in range(3)]
    parallel = [runner.enqueue("parallel", {"n": n}, ACTOR).job.id for n in range(2)]
    for job_id in (serial[0], *parallel):
        wait_for(db, job_id, JobStatus.RUNNING)
    # while the first serial job runs, the others of its kind wait their turn
    assert [service.get(db, j).status for j in serial] == [
        JobStatus.RUNNING,
        JobStatus.QUEUED,
        JobStatus.QUEUED,
    ]
    release.set()
    for job_id in (*serial, *parallel):
        assert wait_for(db, job_id).status is JobStatus.DONE
    assert peak == {"serial": 1, "parallel": 2}


def test_only_one_runner_per_database(
    db: sqlite_utils.Database, runners: Callable[..., JobRunner]
) -> None:
    first = runners(volume={"handler": lambda job, ctx: None})
    first.start()
    left = _left_running(db, "volume", attempts=1)
    second = runners(volume={"handler": lambda job, ctx: None})
    second.start()
    assert first.working and not second.working
    # the second runner neither recovers nor runs anything: the first one's job is untouched
    assert service.get(db, left).status is JobStatus.RUNNING


def test_stopping_requeues_a_running_resumable_job(
    db: sqlite_utils.Database, runners: Callable[..., JobRunner]
) -> None:
    started = threading.Event()

    def long_job(job: Job, ctx: JobContext) -> None:
        started.set()
        while not ctx.cancelled:
            time.sleep(0.005)
        ctx.check_cancelled()

    runner = runners(volume={"handler": long_job, "resumable": True})
    runner.start()
    job_id = runner.enqueue("volume", {"n": 1}, ACTOR).job.id
    assert started.wait(WAIT_S)
    runner.stop(timeout=10)
    job = service.get(db, job_id)
    assert job.status is JobStatus.QUEUED and job.stage == "re-queued after a shutdown"


def test_ended_unsuccessfully_finds_failed_and_cancelled_jobs_by_payload_field(
    db: sqlite_utils.Database,
) -> None:
    """Another domain finds its failed/cancelled jobs by a payload field (an analysis job's
    ``analysis_id``), one row per job, across more subjects than one query binds."""
    failed = service.enqueue(db, "analysis", {"analysis_id": "a1"}, ACTOR).job
    service.fail(db, failed.id, "model unreachable")
    cancelled = service.enqueue(db, "analysis", {"analysis_id": "a2"}, ACTOR).job
    service.request_cancel(db, cancelled.id, ACTOR)  # a queued job is cancelled at once
    service.enqueue(db, "analysis", {"analysis_id": "a3"}, ACTOR)  # still queued
    other_kind = service.enqueue(db, "volume", {"analysis_id": "a1"}, ACTOR).job
    service.fail(db, other_kind.id, "not an analysis")
    many = [f"x{n}" for n in range(1200)] + ["a1", "a2", "a3"]

    ended = service.ended_unsuccessfully(db, "analysis", "analysis_id", many)

    assert sorted((e.subject, e.status, e.error) for e in ended) == [
        ("a1", "failed", "model unreachable"),
        ("a2", "cancelled", service.get(db, cancelled.id).error),
    ]
    assert service.ended_unsuccessfully(db, "analysis", "analysis_id", []) == []
    assert service.ended_unsuccessfully(db, "analysis", "analysis_id') OR 1=1 --", ["a1"]) == []
    assert service.cancel_requested(db, cancelled.id)
    assert not service.cancel_requested(db, failed.id)
    assert not service.cancel_requested(db, "no-such-job")
