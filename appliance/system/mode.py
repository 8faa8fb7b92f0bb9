"""The online/offline switch of the whole box: ``RADIANT_MODE`` is the default, an
administrator's runtime choice (``radiant mode online|offline``, ``POST /api/system/mode``, the
fleet) is kept in the ``settings`` table and wins. Online turns replication and the online
inference endpoint on; every switch is audited."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import Mode, Settings
from appliance.db.connection import transaction
from appliance.db.rows import now_iso

MODE_KEY = "system.mode"


@dataclass(frozen=True)
class ModeChange:
    previous: Mode
    mode: Mode


def stored_mode(db: sqlite_utils.Database) -> Mode | None:
    """The administrator's runtime choice, None when never switched."""
    row = db.execute("SELECT value FROM settings WHERE key = ?", (MODE_KEY,)).fetchone()
    if row is None:
        return None
    try:
        return Mode(str(row[0]))
    except ValueError:
        return None


def effective_mode(db: sqlite_utils.Database, settings: Settings) -> Mode:
    """The runtime choice when there is one, else ``RADIANT_MODE``."""
    return stored_mode(db) or settings.mode


def set_mode(db: sqlite_utils.Database, settings: Settings, mode: Mode, actor: Actor) -> ModeChange:
    """Persist ``mode`` and audit the switch (also when it does not change anything)."""
    with transaction(db):
        previous = effective_mode(db, settings)
        db.execute(
            "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (MODE_KEY, mode.value, now_iso(), actor.name),
        )
        audit.record(
            db,
            actor,
            "system.mode",
            object_type="setting",
            object_id=MODE_KEY,
            detail={"from": previous.value, "to": mode.value},
        )
    return ModeChange(previous, mode)
