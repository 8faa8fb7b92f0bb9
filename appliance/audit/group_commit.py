"""Group commit of the audit rows of reads.

Every audited read commits its row before the data is returned. Committed one by one, twenty
concurrent readers queue for the write lock and pay one WAL fsync each (``synchronous=FULL``).
Here the rows of reads waiting at the same moment are written by one thread, per database
file, in one transaction: each reader still returns only after its own row is durable, and the
chain (:func:`appliance.audit.service.record`) is extended in submission order. The thread
closes its connection and ends after :data:`IDLE_S` without work; the next read starts it again.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.audit.models import Actor
from appliance.db.connection import open_database, transaction

IDLE_S = 2.0
#: At most this many rows in one transaction (a bound on the time the write lock is held).
BATCH_MAX = 256

Recorder = Callable[..., int]


@dataclass
class _Pending:
    actor: Actor
    action: str
    fields: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    row_id: int | None = None
    error: BaseException | None = None


class GroupWriter:
    """The audit-row writer of one database file; :meth:`submit` blocks until committed."""

    def __init__(self, path: Path, timeout_s: float, record: Recorder) -> None:
        self._path = path
        self._timeout_ms = int(timeout_s * 1000)
        self._record = record
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, actor: Actor, action: str, **fields: Any) -> int:
        """Append one row through the writer; its id once committed, or the commit's error."""
        pending = _Pending(actor, action, fields)
        with self._lock:
            self._queue.put(pending)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"audit-writer:{self._path.name}", daemon=True
                )
                self._thread.start()
        if not pending.done.wait(self._timeout_ms / 1000 * 3):
            raise sqlite3.OperationalError("the audit row of this read was not committed in time")
        if pending.error is not None:
            raise pending.error
        assert pending.row_id is not None
        return pending.row_id

    def _run(self) -> None:
        db: sqlite_utils.Database | None = None
        opened: tuple[int, int] | None = None
        try:
            while True:
                try:
                    first = self._queue.get(timeout=IDLE_S)
                except queue.Empty:
                    with self._lock:
                        if self._queue.empty():
                            self._thread = None
                            return
                    continue
                batch = [first]
                while len(batch) < BATCH_MAX:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    now = _identity(self._path)
                    if db is not None and now != opened:  # the file was replaced (a restore)
                        db.conn.close()
                        db = None
                    if db is None:
                        db = open_database(self._path, self._timeout_ms)
                        opened = _identity(self._path)
                    self._write(db, batch)
                except BaseException as exc:  # every waiter hears of it, none returns data
                    for pending in batch:
                        pending.row_id, pending.error = None, exc
                finally:
                    for pending in batch:
                        pending.done.set()
        finally:
            with self._lock:
                if self._thread is threading.current_thread():  # ended by an error
                    self._thread = None
            if db is not None:
                db.conn.close()

    def _write(self, db: sqlite_utils.Database, batch: list[_Pending]) -> None:
        with transaction(db):
            for pending in batch:
                pending.row_id = self._record(db, pending.actor, pending.action, **pending.fields)


def _identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode (None when absent): a database replaced under the same
    name is a different file, which a connection opened before would not see."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


_WRITERS: dict[Path, GroupWriter] = {}
_WRITERS_GUARD = threading.Lock()


def _forget_writers() -> None:
    """In a forked child the writer threads do not exist: start afresh."""
    global _WRITERS_GUARD
    _WRITERS_GUARD = threading.Lock()
    _WRITERS.clear()


os.register_at_fork(after_in_child=_forget_writers)


def writer_for(path: Path, timeout_s: float, record: Recorder) -> GroupWriter:
    """The one writer of ``path`` in this process."""
    with _WRITERS_GUARD:
        writer = _WRITERS.get(path)
        if writer is None:
            writer = _WRITERS[path] = GroupWriter(path, timeout_s, record)
        return writer
