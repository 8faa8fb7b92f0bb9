"""Schema migrations on real SQLite files: pragmas, idempotence, newer-database refusal,
atomicity and concurrent start-up."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from appliance.db import migrate
from appliance.db.connection import open_database, transaction
from appliance.db.migrate import Migration, MigrationError, apply_migrations, schema_version

TABLES = {
    "users",
    "patients",
    "studies",
    "series",
    "instances",
    "volumes",
    "analyses",
    "findings",
    "measurements",
    "reports",
    "report_versions",
    "audit_log",
    "sync_queue",
    "jobs",
    "settings",
    "schema_migrations",
}


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
    finally:
        conn.close()


def test_connection_pragmas(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db", busy_timeout_ms=4321)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 4321


def test_fresh_database_gets_every_table_and_index(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db")
    applied = apply_migrations(db)
    assert applied == [m.version for m in migrate.available()]
    assert set(db.table_names()) >= TABLES
    unique = {
        (table, col)
        for table in ("patients", "studies", "series", "instances")
        for index in db.execute(f"PRAGMA index_list({table})").fetchall()
        if index[2]  # unique
        for col in [r[2] for r in db.execute(f"PRAGMA index_info({index[1]})").fetchall()]
    }
    assert {
        ("patients", "mrn"),
        ("studies", "study_uid"),
        ("series", "series_uid"),
        ("instances", "sop_instance_uid"),
    } <= unique
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = open_database(path)
    apply_migrations(db)
    before = _schema(path)
    rows_before = db.execute("SELECT * FROM schema_migrations").fetchall()
    assert apply_migrations(db) == []
    db.conn.close()
    assert apply_migrations(open_database(path)) == []
    assert _schema(path) == before
    assert open_database(path).execute("SELECT * FROM schema_migrations").fetchall() == (
        rows_before
    )


def test_database_newer_than_code_is_refused(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db")
    apply_migrations(db)
    latest = schema_version(db)
    with transaction(db):
        db.execute(
            "INSERT INTO schema_migrations VALUES (?, 'from_the_future', 'x', '2030-01-01')",
            (latest + 1,),
        )
    with pytest.raises(MigrationError, match=rf"schema version {latest + 1}.*newer RadiantAI"):
        apply_migrations(db)


def test_failed_migration_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_database(tmp_path / "a.db")
    apply_migrations(db)
    shipped = migrate.available()
    broken = Migration(
        len(shipped) + 1,
        "broken",
        "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    monkeypatch.setattr(migrate, "available", lambda: [*shipped, broken])
    with pytest.raises(MigrationError, match=f"{broken.version:04d}_broken failed"):
        apply_migrations(db)
    assert "half_done" not in db.table_names()
    assert schema_version(db) == len(shipped)
    assert not db.conn.in_transaction


def test_concurrent_start_ups_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    open_database(path).conn.close()
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(apply_migrations(open_database(path)))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # Each migration is applied by exactly one start-up; which one does which is up to the
    # scheduler (a start-up that loses the lock for one migration skips it once it gets it).
    applied = sorted(version for run in results for version in run)
    assert applied == [m.version for m in migrate.available()]
    assert all(run == sorted(run) for run in results)


def test_split_statements_keeps_triggers_whole() -> None:
    sql = (
        "-- a comment\nCREATE TABLE t (x);\n"
        "CREATE TRIGGER t_guard BEFORE DELETE ON t\nBEGIN SELECT RAISE(ABORT, 'no; never');"
        " END;\nINSERT INTO t VALUES (1)"
    )
    statements = migrate.split_statements(sql)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    assert statements[2] == "INSERT INTO t VALUES (1)"


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db")
    apply_migrations(db)
    with pytest.raises(sqlite3.IntegrityError), transaction(db):
        db.execute(
            "INSERT INTO studies (id, patient_id, study_uid, created_at, updated_at)"
            " VALUES ('s', 'no-such-patient', '1.2.3', 'now', 'now')"
        )


def test_pool_gives_one_connection_per_thread_and_releases_it(tmp_path: Path) -> None:
    from appliance.db.connection import ConnectionPool

    pool = ConnectionPool(tmp_path / "a.db")
    main = pool.get()
    assert pool.get() is main
    seen: list[object] = []

    def worker() -> None:
        seen.append(pool.get())
        pool.release()

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(db) for db in seen}) == 5 and main not in seen
    assert pool.open_count() == 1
    pool.close_all()
    assert pool.open_count() == 0
