"""The job runner: worker threads per kind that claim queued jobs and run their handlers.

A kind is registered with its handler, how many of its jobs may run at once (``concurrency``,
one thread each; ``analysis`` and, on a 2-core box, ``volume`` run one at a time), whether a job
interrupted by a crash may simply run again (``resumable``) and how many attempts it gets.

A handler is ``handler(job, ctx) -> result | None``: it reports ``ctx.progress(stage, fraction)``
and checks ``ctx.cancelled`` / ``ctx.check_cancelled()`` between steps (cancellation is
cooperative). Returning finishes the job (``done``, with the result: ids only); raising
:class:`~appliance.jobs.models.JobFailed` fails it with that reason; any other exception fails
it with the exception's text and is logged; the worker thread carries on in every case.

Only one runner may work on a database: :meth:`JobRunner.start` takes an exclusive ``flock`` on
``lock_path`` (the data dir's ``jobs.lock``). Holding it, the runner knows that every job still
``running`` was left by a process that died, and recovers them before starting its workers:
re-queued when the kind is resumable and attempts remain, else failed with the reason
"interrupted by a restart". A heartbeat thread stamps ``heartbeat_at`` of the running jobs and
picks up cancellations asked for by other processes. Worker threads run at a lower CPU
priority (``nice``, default 10) so that a background build never slows the DICOM receiver.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from appliance.audit.models import Actor
from appliance.db.connection import ConnectionPool, transaction
from appliance.jobs import service
from appliance.jobs.models import Job, JobCancelled, JobFailed
from appliance.logs import get_logger

log = get_logger("radiant.jobs")

Handler = Callable[[Job, "JobContext"], "dict[str, Any] | None"]


@dataclass(frozen=True)
class KindSpec:
    """How jobs of one kind run."""

    handler: Handler
    concurrency: int = 1
    resumable: bool = False
    max_attempts: int = 3


class JobContext:
    """Given to a handler: progress reporting and the cancel flag of its job."""

    def __init__(self, runner: JobRunner, job: Job, cancel: threading.Event) -> None:
        self._runner = runner
        self.job = job
        self._cancel = cancel

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to cancel (or the runner is shutting down)."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when :attr:`cancelled`."""
        if self._cancel.is_set():
            raise JobCancelled(self.job.id)

    def progress(self, stage: str, fraction: float) -> None:
        """Record what the job is doing and how far it is (0..1); also a heartbeat."""
        asked = service.progress(self._runner.pool.get(), self.job.id, stage, fraction)
        if asked:
            self._cancel.set()


class JobRunner:
    """Worker threads per registered kind over the ``jobs`` table of ``pool``'s database."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        lock_path: Path | None = None,
        poll_s: float = 1.0,
        heartbeat_s: float = 5.0,
        nice: int = 10,
    ) -> None:
        self.pool = pool
        self.nice = nice
        self.lock_path = lock_path
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.kinds: dict[str, KindSpec] = {}
        self.recovered: service.Recovered | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wake: dict[str, list[threading.Event]] = {}
        self._active: dict[str, tuple[Job, threading.Event]] = {}
        self._lock = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        self._started = False

    # -- set-up -----------------------------------------------------------------------------

    def register(
        self,
        kind: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        resumable: bool = False,
        max_attempts: int = 3,
    ) -> None:
        """Register the handler of ``kind``; before :meth:`start`."""
        if self._started:
            raise RuntimeError("register every kind before the runner starts")
        if concurrency < 1 or max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be at least 1")
        self.kinds[kind] = KindSpec(handler, concurrency, resumable, max_attempts)

    def may_resume(self, kind: str, attempts: int) -> bool:
        """Whether an interrupted job of ``kind`` after ``attempts`` attempts is run again."""
        spec = self.kinds.get(kind)
        return spec is not None and spec.resumable and attempts < spec.max_attempts

    @property
    def working(self) -> bool:
        """True while the worker threads run (False when another runner holds the lock)."""
        return bool(self._threads) and not self._stop.is_set()

    def start(self) -> None:
        """Take the job lock, recover interrupted jobs, start the workers and the heartbeat."""
        if self._started:
            raise RuntimeError("the runner is already started")
        self._started = True
        if not self._take_lock():
            log.error("jobs_lock_held", lock=str(self.lock_path))
            return
        self.recovered = service.recover_interrupted(self.pool.get(), self.may_resume)
        if self.recovered.requeued or self.recovered.failed:
            log.warning(
                "jobs_recovered",
                requeued=self.recovered.requeued,
                failed=self.recovered.failed,
            )
        for kind, spec in self.kinds.items():
            events = []
            for number in range(spec.concurrency):
                event = threading.Event()
                events.append(event)
                thread = threading.Thread(
                    target=self._work,
                    args=(kind, spec, event),
                    name=f"job-{kind}-{number}",
                    daemon=True,
                )
                self._threads.append(thread)
            self._wake[kind] = events
        beat = threading.Thread(target=self._heartbeat, name="job-heartbeat", daemon=True)
        self._threads.append(beat)
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, ask running handlers to stop, wait for them, release the lock.

        A job stopped this way goes back to ``queued`` when its kind is resumable and attempts
        remain, else it fails with "interrupted by a shutdown".
        """
        self._stop.set()
        with self._lock:
            for _, cancel in self._active.values():
                cancel.set()
        for events in self._wake.values():
            for event in events:
                event.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _take_lock(self) -> bool:
        if self.lock_path is None:
            return True
        handle = open(self.lock_path, "ab")  # noqa: SIM115 (held open while running)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        os.chmod(self.lock_path, 0o600)
        self._lock_file = handle
        return True

    # -- use --------------------------------------------------------------------------------

    def enqueue(
        self, kind: str, payload: dict[str, Any], actor: Actor, *, dedupe: bool = True
    ) -> service.Enqueued:
        """Queue a job (see :func:`service.enqueue`) and wake a worker of its kind."""
        queued = service.enqueue(self.pool.get(), kind, payload, actor, dedupe=dedupe)
        self.wake(kind)
        return queued

    def wake(self, kind: str | None = None) -> None:
        """Make the workers of ``kind`` (all kinds when None) look for work now."""
        for name, events in self._wake.items():
            if kind is None or name == kind:
                for event in events:
                    event.set()

    def signal_cancel(self, job_id: str) -> None:
        """Set the cancel flag of a job running in this process (the row says so already)."""
        with self._lock:
            active = self._active.get(job_id)
        if active is not None:
            active[1].set()

    def active_jobs(self) -> list[str]:
        with self._lock:
            return list(self._active)

    # -- threads ----------------------------------------------------------------------------

    def _work(self, kind: str, spec: KindSpec, wake: threading.Event) -> None:
        _lower_priority(self.nice)
        while not self._stop.is_set():
            try:
                job = service.claim(self.pool.get(), kind)
            except Exception:
                log.exception("job_claim_failed", kind=kind)
                job = None
            if job is None:
                wake.wait(self.poll_s)
                wake.clear()
                continue
            self._run(job, spec)

    def _run(self, job: Job, spec: KindSpec) -> None:
        cancel = threading.Event()
        with self._lock:
            self._active[job.id] = (job, cancel)
        db = self.pool.get()
        try:
            context = JobContext(self, job, cancel)
            try:
                result = spec.handler(job, context)
            except JobCancelled:
                if self._stop.is_set() and not service.get(db, job.id).cancel_requested:
                    self._interrupted(job, spec)
                else:
                    service.mark_cancelled(db, job.id)
                    log.info("job_cancelled", job_id=job.id, kind=job.kind)
            except JobFailed as exc:
                service.fail(db, job.id, str(exc) or "failed", code="JobFailed")
                log.warning("job_failed", job_id=job.id, kind=job.kind, reason=str(exc))
            except Exception as exc:
                log.exception("job_error", job_id=job.id, kind=job.kind)
                text = str(exc) or exc.__class__.__name__
                service.fail(
                    db, job.id, f"{exc.__class__.__name__}: {text}", code=exc.__class__.__name__
                )
            else:
                service.finish(db, job.id, result)
                log.info("job_done", job_id=job.id, kind=job.kind)
        except Exception:
            # The database itself failed: the row stays running and the next start recovers it.
            log.exception("job_bookkeeping_failed", job_id=job.id, kind=job.kind)
        finally:
            with self._lock:
                self._active.pop(job.id, None)

    def _interrupted(self, job: Job, spec: KindSpec) -> None:
        db = self.pool.get()
        if spec.resumable and job.attempts < spec.max_attempts:
            with transaction(db):
                db.execute(
                    "UPDATE jobs SET status = 'queued', stage = 're-queued after a shutdown',"
                    " progress = 0, started_at = NULL, heartbeat_at = NULL"
                    " WHERE id = ? AND status = 'running'",
                    (job.id,),
                )
            log.info("job_requeued", job_id=job.id, kind=job.kind)
        else:
            service.fail(db, job.id, "interrupted by a shutdown", code="interrupted")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            ids = self.active_jobs()
            if not ids:
                continue
            try:
                asked = service.heartbeat(self.pool.get(), ids)
            except Exception:
                log.exception("job_heartbeat_failed")
                continue
            for job_id in asked:
                self.signal_cancel(job_id)


def _lower_priority(nice: int) -> None:
    """Make the calling worker thread (and the threads it starts) yield the CPU to the receiver
    and the API: on Linux a thread is a task with its own nice value (setpriority on its id)."""
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        log.debug("job_nice_unavailable")
