"""The one ingest path for every DICOM source (network, USB/CD, web upload).

For each instance: read and check it (:mod:`appliance.dicom.reading`); quarantine it with a reason
when it is unfit; skip it when its SOP Instance UID is already stored (counted, as Orthanc does)
unless overwriting is configured; otherwise write the file durably to the object store, then index
patient, study, series and instance rows and the audit row in ONE transaction. Only when both are
durable does :meth:`Ingestor.ingest` return ``stored``, which is when a caller may acknowledge.

Why "stored" means durable, with the fewest syncs: (1) the file is created under its final name,
written, fsynced and its directory fsynced (:meth:`ObjectStore.create`, on a helper thread)
before the transaction that indexes it commits; (2) that transaction commits in SQLite's WAL
with ``synchronous=FULL``, which fsyncs the WAL before COMMIT returns; (3) only then does
:meth:`Ingestor.ingest` return. A crash before (2) completes leaves at most a file that no row
points to, which start-up recovery sets aside; a crash after it loses nothing. Never is a row
durable without its file.

Group commit: instances arriving at once on parallel associations share the WAL fsync. Each
caller prepares its instance (scan, hash, file write started) and queues it; whichever caller
next holds the write lock takes every queued instance and indexes them all in ONE transaction,
each inside its own savepoint (an instance refused while indexing is rolled back alone), waits
for each one's file before COMMIT, commits once and then hands every caller its own outcome.
A caller returns only after the commit that holds its row has returned (or with its own
error), so (1) to (3) hold for each instance; only the number of fsyncs changes. Callers wait
on a condition, woken when a commit ends, instead of sleeping in SQLite's busy handler.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import sqlite_utils

from appliance.audit.models import Actor
from appliance.db.connection import ConnectionPool, transaction
from appliance.db.rows import new_id
from appliance.dicom.index_rows import index_instance
from appliance.dicom.limits import meta_uids
from appliance.dicom.quarantine import Quarantine
from appliance.dicom.reading import InstanceInfo, Rejected, read_instance
from appliance.dicom.scan import scan_instance
from appliance.storage.service import ObjectStore, instance_key

_LOCKS = [threading.Lock() for _ in range(64)]


class Outcome(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    sop_instance_uid: str | None = None
    reason: str | None = None
    instance_id: str | None = None
    series_id: str | None = None
    study_id: str | None = None
    patient_id: str | None = None
    quarantine_id: str | None = None
    commit: int | None = None  # number of the index commit that made it durable (stored)
    # the File Meta (for the network: the C-STORE command) names other UIDs than the data set
    mismatch: bool = False


@dataclass
class _Pending:
    """One instance waiting for a group commit; ``done`` is set (under the write lock) by the
    caller that committed it, with its ``result`` or ``error`` and the commit's number."""

    info: InstanceInfo
    key: str
    data: bytes
    sha256: str
    source: str
    origin: str | None
    actor: Actor
    existing: Any
    writing: Future[bool] | None
    done: bool = False
    result: IngestResult | None = None
    error: BaseException | None = None
    commit: int = 0


def _meta_mismatch(data: bytes, info: InstanceInfo) -> str | None:
    """Why the File Meta's Media Storage SOP Class/Instance UIDs (PS3.10 7.1), which the
    receiver builds from the C-STORE command's Affected SOP Class/Instance UIDs, do not name
    the data set's own (PS3.4 B.2.3); None when they do or are absent."""
    sop_class, sop_instance = meta_uids(data)
    if sop_instance and sop_instance != info.sop_instance_uid:
        return "the SOP Instance UID of the command/File Meta differs from the data set's"
    if sop_class and sop_class != info.sop_class_uid:
        return "the SOP Class UID of the command/File Meta differs from the data set's"
    return None


def _settle(writing: Future[bool] | None) -> None:
    """Wait for a file write to end (its outcome is not needed) before cleaning up after it."""
    if writing is not None:
        with contextlib.suppress(BaseException):
            writing.result()


class Ingestor:
    """Stores and indexes DICOM instances; safe to call from several threads at once."""

    def __init__(
        self,
        pool: ConnectionPool,
        store: ObjectStore,
        quarantine: Quarantine,
        *,
        overwrite: bool = False,
    ) -> None:
        self.pool = pool
        self.store = store
        self.quarantine = quarantine
        self.overwrite = overwrite
        self._write_lock = threading.Lock()  # held by the caller committing a batch
        self._queue: list[_Pending] = []
        # guards the queue and the jobs' ``done``; notified whenever a batch commit ends
        self._turn = threading.Condition()
        self._writer: sqlite_utils.Database | None = None
        self._writer_owner: tuple[int, int] = (0, -1)  # (process, pool generation) it is for
        self._commits = 0
        # threads start on first use; they only write and fsync files
        self._files = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ingest-write")

    def ingest(
        self, data: bytes, *, source: str, actor: Actor, origin: str | None = None
    ) -> IngestResult:
        """Store one DICOM Part 10 file; the result says stored, duplicate or quarantined."""
        db = self.pool.get()
        # the fast scan answers for plain instances; anything else, and every instance that is
        # to be refused, goes through the full reader (same result, see appliance.dicom.scan)
        info = scan_instance(data)
        if info is None:
            try:
                _, info = read_instance(data)
            except Rejected as exc:
                return self._quarantine(db, data, exc, source, origin, actor)
        mismatch = _meta_mismatch(data, info)
        if mismatch:
            result = self._quarantine(
                db, data, Rejected(mismatch, info.sop_instance_uid), source, origin, actor
            )
            return dataclasses.replace(result, mismatch=True)
        lock = _LOCKS[hash(info.sop_instance_uid) % len(_LOCKS)]
        with lock:
            existing = db.execute(
                "SELECT id, storage_key, series_id FROM instances WHERE sop_instance_uid = ?",
                (info.sop_instance_uid,),
            ).fetchone()
            if existing is not None and not self.overwrite:
                with transaction(db):
                    db.execute(
                        "UPDATE instances SET duplicates = duplicates + 1 WHERE id = ?",
                        (existing[0],),
                    )
                return IngestResult(
                    Outcome.DUPLICATE,
                    info.sop_instance_uid,
                    instance_id=existing[0],
                    series_id=existing[2],
                )
            key = instance_key(info.study_uid, info.series_uid, info.sop_instance_uid)
            if existing is not None:
                # A replacement goes to a new name; the row switches to it in the commit, and
                # only then is the old file removed: a crash never leaves a row without its file.
                key = key.removesuffix(".dcm") + f".{new_id()[:8]}.dcm"
            # The file is written and fsynced on a helper thread while this one hashes the bytes
            # and builds the index rows (write, fsync and hashing release the GIL); COMMIT
            # waits for the file.
            writing = self._files.submit(self.store.create, key, data) if not existing else None
            sha256 = hashlib.sha256(data).hexdigest()
            job = _Pending(info, key, data, sha256, source, origin, actor, existing, writing)
            try:
                result = self._group_commit(job)
            except Rejected as exc:
                _settle(writing)
                self.store.delete(key, missing_ok=True)
                exc.sop_instance_uid = info.sop_instance_uid
                return self._quarantine(db, data, exc, source, origin, actor)
            except BaseException:
                _settle(writing)
                self.store.delete(key, missing_ok=True)
                raise
            if existing is not None and existing[1] != key:
                self.store.delete(existing[1], missing_ok=True)
            return result

    @property
    def commits(self) -> int:
        """Index transactions committed by :meth:`ingest` so far (each holds one or more
        instances); the number of the commit that stored an instance is in its result."""
        return self._commits

    def pending(self) -> int:
        """Instances prepared and waiting for the next group commit."""
        with self._turn:
            return len(self._queue)

    def _writer_db(self) -> sqlite_utils.Database:
        """The one connection that commits batches, used only with the write lock held.

        SQLite drops a connection's page cache when it finds that another connection wrote
        since its last transaction; with each association's thread committing on its own
        connection, every commit re-read the pages it was about to change (about 26 reads per
        instance, ``strace``, 4 associations). One writer keeps its cache from one commit to
        the next. Reopened in a forked child and after the pool's ``close_all``."""
        owner = (os.getpid(), self.pool.generation)
        if self._writer is None or self._writer_owner != owner:
            self._writer = self.pool.dedicated()
            self._writer_owner = owner
        return self._writer

    def _group_commit(self, job: _Pending) -> IngestResult:
        """Queue ``job``; return once a commit holding its row has returned (see the module
        docstring), or raise the error that kept it out of that commit.

        A caller whose job another caller committed is woken as soon as that commit ends; it
        does not wait for the write lock, which the next batch's committer may already hold."""
        batch: list[_Pending] | None = None
        with self._turn:
            self._queue.append(job)
            while not job.done:
                # Whoever took a job commits it, and marks it done, before releasing the write
                # lock: holding that lock with this job not done means it is still queued.
                if self._write_lock.acquire(blocking=False):
                    batch, self._queue = self._queue, []
                    break
                # every release below notifies; the timeout only bounds a holder that does not
                self._turn.wait(0.05)
        if batch is not None:
            try:
                self._commit_batch(batch)
            finally:
                self._write_lock.release()
                with self._turn:
                    self._turn.notify_all()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _commit_batch(self, batch: list[_Pending]) -> None:
        """Index every job of ``batch`` in one transaction, a savepoint each, on the writer
        connection; called with the write lock held. Every job ends ``done``, with a result or
        an error."""
        try:
            writer = self._writer_db()
            with transaction(writer):
                for job in batch:
                    writer.execute("SAVEPOINT ingest_one")
                    try:
                        job.result = self._index(
                            writer,
                            job.info,
                            job.key,
                            len(job.data),
                            job.sha256,
                            job.source,
                            job.origin,
                            job.actor,
                            job.existing,
                        )
                        created = job.writing.result() if job.writing is not None else False
                        if not created:  # a replacement, or a name taken by an unindexed file
                            self.store.put(job.key, job.data)
                    except Exception as exc:
                        writer.execute("ROLLBACK TO ingest_one")
                        job.result, job.error = None, exc
                    writer.execute("RELEASE ingest_one")
            self._commits += 1
            for job in batch:
                job.commit = self._commits
                if job.result is not None:
                    job.result = replace(job.result, commit=self._commits)
        except BaseException as exc:
            for job in batch:
                if job.error is None:
                    job.result, job.error = None, exc
        finally:
            for job in batch:
                job.done = True

    def _quarantine(
        self,
        db: sqlite_utils.Database,
        data: bytes,
        exc: Rejected,
        source: str,
        origin: str | None,
        actor: Actor,
    ) -> IngestResult:
        qid = self.quarantine.keep(
            db,
            data,
            reason=exc.reason,
            source=source,
            origin=origin,
            sop_instance_uid=exc.sop_instance_uid,
            actor=actor,
        )
        return IngestResult(
            Outcome.QUARANTINED, exc.sop_instance_uid, reason=exc.reason, quarantine_id=qid
        )

    def _index(
        self,
        db: sqlite_utils.Database,
        info: InstanceInfo,
        key: str,
        size: int,
        sha256: str,
        source: str,
        origin: str | None,
        actor: Actor,
        existing: Any,
    ) -> IngestResult:
        ids = index_instance(db, info, key, size, sha256, source, origin, actor, existing)
        return IngestResult(
            Outcome.STORED,
            info.sop_instance_uid,
            instance_id=ids.instance_id,
            series_id=ids.series_id,
            study_id=ids.study_id,
            patient_id=ids.patient_id,
        )
