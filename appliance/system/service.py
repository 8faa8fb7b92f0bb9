"""Health of the appliance's parts."""

from __future__ import annotations

import sqlite3

import sqlite_utils

from appliance import __version__
from appliance.config import Settings
from appliance.db.migrate import schema_version
from appliance.system.models import DatabaseHealth, Health


def database_health(db: sqlite_utils.Database) -> DatabaseHealth:
    try:
        mode = str(db.execute("PRAGMA journal_mode").fetchone()[0])
        version = schema_version(db)
        db.execute("SELECT COUNT(*) FROM users").fetchone()
    except sqlite3.Error as exc:
        return DatabaseHealth(
            status="error", schema_version=None, journal_mode=None, detail=exc.__class__.__name__
        )
    return DatabaseHealth(status="ok", schema_version=version, journal_mode=mode)


def health(db: sqlite_utils.Database, settings: Settings) -> Health:
    database = database_health(db)
    return Health(
        status="ok" if database.status == "ok" else "degraded",
        version=__version__,
        mode=settings.mode,
        site=settings.site_name,
        database=database,
    )
