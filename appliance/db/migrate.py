"""Numbered, forward-only schema migrations recorded in ``schema_migrations``.

Migrations are the ``NNNN_name.sql`` files beside this module. Each runs in its own transaction
together with its ``schema_migrations`` row, so a crash leaves either all of it or none.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import sqlite_utils

from appliance.db.connection import transaction

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The database cannot be brought to this code's schema."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def available() -> list[Migration]:
    """The migrations shipped with this code, in order; versions must be 1..N without gaps."""
    found: list[Migration] = []
    for entry in resources.files("appliance.db.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError("migration files are not numbered 0001..N without gaps")
    return found


def _ensure_table(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )


def schema_version(db: sqlite_utils.Database) -> int:
    """Highest applied migration, 0 for an empty database."""
    if "schema_migrations" not in db.table_names():
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def apply_migrations(db: sqlite_utils.Database) -> list[int]:
    """Apply pending migrations; returns the versions applied (empty when up to date)."""
    migrations = available()
    latest = migrations[-1].version if migrations else 0
    _ensure_table(db)
    current = schema_version(db)
    if current > latest:
        raise MigrationError(
            f"the database is at schema version {current} but this software knows only up to "
            f"{latest}: it was written by a newer RadiantAI; install that version or restore a "
            "backup made by this one"
        )
    applied: list[int] = []
    for migration in migrations:
        if migration.version <= current:
            continue
        try:
            with transaction(db):
                # Re-read under the write lock: another process may have migrated meanwhile.
                if schema_version(db) >= migration.version:
                    continue
                for statement in split_statements(migration.sql):
                    db.conn.execute(statement)
                db.conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        migration.version,
                        migration.name,
                        migration.checksum,
                        datetime.now(UTC).isoformat(),
                    ),
                )
        except sqlite3.Error as exc:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed: {exc}"
            ) from exc
        applied.append(migration.version)
    return applied


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (``executescript`` would commit our transaction)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip().strip(";").strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        # A trailing statement without its semicolon is still a statement.
        statements.append(buffer.strip())
    return statements
