"""Opening the appliance database and running writes in transactions.

The connection runs in autocommit mode at the driver level (``isolation_level=None``), so a
transaction exists only where :func:`transaction` opens one; sqlite-utils calls made inside it
nest as savepoints and commit together.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

#: The attribute of a :class:`sqlite_utils.Database` holding its file's write gate and busy timeout.
_GATE_ATTR = "_radiant_write_gate"
_GATES: dict[str, _WriteGate] = {}
_GATES_GUARD = threading.Lock()


class _WriteGate:
    """One lock per database file per process, taken by :func:`transaction` before ``BEGIN
    IMMEDIATE``: the process's writers queue here and are woken the moment the lock is free,
    instead of in SQLite's busy handler, which sleeps in growing steps (up to 100 ms each) and
    so turns a short wait into a long tail. Other processes still meet SQLite's own lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()


def _gate(path: Path) -> _WriteGate:
    key = path.resolve()
    with _GATES_GUARD:
        gate = _GATES.get(str(key))
        if gate is None:
            gate = _GATES[str(key)] = _WriteGate(key)
        return gate


def _forget_gates() -> None:
    """In a forked child: other threads' locks were copied in whatever state they were in."""
    global _GATES_GUARD
    _GATES_GUARD = threading.Lock()
    _GATES.clear()


os.register_at_fork(after_in_child=_forget_gates)


def database_file(db: sqlite_utils.Database) -> tuple[Path, float] | None:
    """The resolved file of a database opened by :func:`open_database` and its busy timeout in
    seconds (None for one opened otherwise)."""
    held: tuple[_WriteGate, float] | None = getattr(db, _GATE_ATTR, None)
    return (held[0].path, held[1]) if held is not None else None


def open_database(path: Path, busy_timeout_ms: int = 10_000) -> sqlite_utils.Database:
    """Open ``path`` with WAL, ``synchronous=FULL``, ``foreign_keys=ON`` and a busy timeout."""
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        timeout=busy_timeout_ms / 1000,
        # Each connection is used by one thread only (ConnectionPool); the flag is off so that
        # close_all() may close them from the thread that shuts down.
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise sqlite3.OperationalError(f"could not switch {path.name} to WAL (got {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    setattr(db, _GATE_ATTR, (_gate(path), busy_timeout_ms / 1000))
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Run the block as one write transaction (``BEGIN IMMEDIATE``).

    IMMEDIATE takes the write lock up front, so two writers wait on ``busy_timeout`` instead of
    failing when a read transaction tries to upgrade. Nested use becomes a savepoint.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    found: tuple[_WriteGate, float] | None = getattr(db, _GATE_ATTR, None)
    # Past the connection's busy timeout, go on to SQLite's own lock (a same-thread nested
    # transaction on a second connection then fails as it did before, instead of hanging).
    held = found is not None and found[0].lock.acquire(timeout=found[1])
    try:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        else:
            try:
                db.conn.execute("COMMIT")
            except BaseException:
                if db.conn.in_transaction:
                    db.conn.execute("ROLLBACK")
                raise
    finally:
        if held:
            assert found is not None
            found[0].lock.release()


@contextmanager
def snapshot(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Run the block's reads in one read transaction (``BEGIN DEFERRED``): a consistent view
    (a count and its page agree) that takes no write lock, so in WAL mode readers neither wait
    for writers nor hold them up. Inside a transaction it is that transaction."""
    if db.conn.in_transaction:
        yield db
        return
    db.conn.execute("BEGIN DEFERRED")
    try:
        yield db
    finally:
        if db.conn.in_transaction:
            db.conn.execute("COMMIT")


class ConnectionPool:
    """One connection per thread to one database file; :meth:`close_all` at shutdown.

    A connection is never handed to another thread while its own may still use it.
    """

    def __init__(self, path: Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[sqlite_utils.Database] = []  # the threads' connections
        self._dedicated: list[sqlite_utils.Database] = []
        self.generation = 0  # counts close_all(): a connection from before it is closed

    def get(self) -> sqlite_utils.Database:
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            db = open_database(self.path, self.busy_timeout_ms)
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def dedicated(self) -> sqlite_utils.Database:
        """A connection of its own for one job that several threads take turns at (each use
        under the job's own lock), closed by :meth:`close_all` like the others."""
        db = open_database(self.path, self.busy_timeout_ms)
        with self._lock:
            self._dedicated.append(db)
        return db

    def release(self) -> None:
        """Close this thread's connection (for short-lived threads, e.g. one per association)."""
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            return
        self._local.db = None
        with self._lock:
            if db in self._all:
                self._all.remove(db)
        db.conn.close()

    def open_count(self) -> int:
        """Threads' connections open now (not the :meth:`dedicated` ones)."""
        with self._lock:
            return len(self._all)

    def close_all(self) -> None:
        with self._lock:
            for db in [*self._all, *self._dedicated]:
                db.conn.close()
            self._all.clear()
            self._dedicated.clear()
            self.generation += 1
        self._local = threading.local()


class ThreadBoundDatabase:
    """Stands for "the calling thread's connection" of a pool, resolved at each use.

    FastAPI may run a sync dependency and the endpoint on different worker threads; a
    connection fetched in the dependency would then be used by the endpoint while its own
    thread serves another request, mixing two requests' transactions. This handle is safe to
    pass around: every attribute access goes to the pool's connection of the current thread.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool.get(), name)

    def __getitem__(self, name: str) -> Any:
        return self._pool.get()[name]
