"""Audited reads under concurrency: reads in a snapshot that takes no write lock, their audit
rows committed together (group commit) yet each before its own data is returned, the chain
intact, and a failed commit refusing every waiting read."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlite_utils

from appliance.audit import group_commit
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db import connection
from appliance.db.connection import open_database, snapshot, transaction
from appliance.db.migrate import apply_migrations
from appliance.errors import NotFound

ACTOR = Actor(name="reader", role="radiologist", client="127.0.0.1")
READERS = 24


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "radiant.db"
    db = open_database(file)
    apply_migrations(db)
    db.conn.close()
    return file


def _committed(path: Path, row_id: int) -> bool:
    """Whether another connection (as another process) sees the row."""
    other = sqlite3.connect(path)
    try:
        found = other.execute("SELECT 1 FROM audit_log WHERE id = ?", (row_id,)).fetchone()
        return found is not None
    finally:
        other.close()


def test_concurrent_reads_each_return_after_their_own_row_is_committed(path: Path) -> None:
    seen: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(READERS)
    lock = threading.Lock()

    def reader(n: int) -> None:
        db = open_database(path)
        try:
            start.wait()
            value = audit.audited_read(
                db, ACTOR, "thing.read", "thing", f"thing-{n}", lambda: n, lambda v: {"n": v}
            )
            assert value == n
            row = audit.latest(db, "thing.read", f"thing-{n}")
            assert row is not None and row.detail == {"n": n}
            with lock:
                seen.append((row.id, _committed(path, row.id)))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.conn.close()

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({row_id for row_id, _ in seen}) == READERS
    assert all(committed for _, committed in seen)
    db = open_database(path)
    try:
        report = audit.verify(db)
        assert report.ok and report.rows == READERS
    finally:
        db.conn.close()


def test_a_miss_is_audited_before_it_is_raised(path: Path) -> None:
    db = open_database(path)

    def missing() -> int:
        raise NotFound("thing gone")

    with pytest.raises(NotFound):
        audit.audited_read(db, ACTOR, "thing.read", "thing", "gone", missing)
    row = audit.latest(db, "thing.read", "gone", outcome="not_found")
    assert row is not None and _committed(path, row.id)


def test_inside_a_transaction_the_row_belongs_to_it(path: Path) -> None:
    db = open_database(path)

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction(db):
        audit.record_read(db, ACTOR, "thing.read", object_type="thing", object_id="t")
        raise Undo
    assert audit.latest(db, "thing.read", "t") is None


def test_a_failed_commit_refuses_every_waiting_read(path: Path) -> None:
    calls = threading.Event()

    def failing(db: sqlite_utils.Database, actor: Actor, action: str, **fields: object) -> int:
        calls.set()
        raise sqlite3.OperationalError("disk I/O error")

    writer = group_commit.GroupWriter(path, 5.0, failing)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        writer.submit(ACTOR, "thing.read", object_type="thing", object_id="t")
    assert calls.is_set()
    # The writer goes on: the next read through it is served (here by the real recorder).
    writer._record = audit.record
    row_id = writer.submit(ACTOR, "thing.read", object_type="thing", object_id="t")
    assert _committed(path, row_id)


def test_a_snapshot_read_does_not_hold_writers_and_sees_one_state(path: Path) -> None:
    reader, writer = open_database(path), open_database(path, busy_timeout_ms=100)
    with snapshot(reader):
        before = reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
        # A writer commits while the read is open (it would time out behind BEGIN IMMEDIATE).
        audit.record(writer, ACTOR, "thing.touch", object_type="thing", object_id="w")
        assert reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == before
    assert reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == before + 1


def test_in_process_writers_queue_on_the_gate_and_all_commit(path: Path) -> None:
    """Writers of one process on their own connections: none fails with "database is locked"
    although each holds the write lock for a while."""
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(n: int) -> None:
        db = open_database(path, busy_timeout_ms=5_000)
        try:
            start.wait()
            with transaction(db):
                audit.record(db, ACTOR, "thing.touch", object_type="thing", object_id=str(n))
                threading.Event().wait(0.05)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.conn.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = open_database(path)
    assert audit.verify(db).rows == 8


def test_a_held_gate_falls_back_to_sqlite_after_its_timeout(path: Path) -> None:
    """A thread that already holds the gate (a nested transaction on a second connection)
    does not hang: past the timeout it goes on to SQLite's own lock."""
    outer, inner = open_database(path, busy_timeout_ms=200), open_database(path, 200)
    with transaction(outer):
        pass  # the gate is free again
    gate, _ = getattr(inner, connection._GATE_ATTR)
    assert gate.lock.acquire()
    try:
        with transaction(inner):
            audit.record(inner, ACTOR, "thing.touch", object_type="thing", object_id="x")
    finally:
        gate.lock.release()
    assert audit.latest(inner, "thing.touch", "x") is not None


def _read_once(path: str) -> None:
    db = open_database(Path(path))
    audit.audited_read(db, ACTOR, "thing.read", "thing", "child", lambda: 1)


def test_a_forked_child_audits_its_reads(path: Path) -> None:
    """The server forks its workers: a child must not wait on the parent's writer thread."""
    db = open_database(path)
    audit.audited_read(db, ACTOR, "thing.read", "thing", "parent", lambda: 1)
    child = multiprocessing.get_context("fork").Process(target=_read_once, args=(str(path),))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert audit.latest(db, "thing.read", "child") is not None


def test_a_database_replaced_under_the_same_name_gets_the_rows(path: Path) -> None:
    """A restore puts a new file where the old one was: the writer, still open on the old
    file, must write the next rows into the new one."""
    first = open_database(path)
    audit.audited_read(first, ACTOR, "thing.read", "thing", "before", lambda: 1)
    first.conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    fresh = open_database(path)
    apply_migrations(fresh)
    audit.audited_read(fresh, ACTOR, "thing.read", "thing", "after", lambda: 1)
    assert audit.latest(fresh, "thing.read", "after") is not None
    assert audit.verify(fresh).ok
