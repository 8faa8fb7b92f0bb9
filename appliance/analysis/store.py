"""The ``analyses`` rows: the job kind and system actor that write them, row reads and status
updates (the findings of a finished analysis are stored by :mod:`appliance.analysis.results`).
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import fetch_all, fetch_found, now_iso

JOB_KIND = "analysis"
SYSTEM = Actor.system("analysis")


#: Every row of ``sql`` as a dict; the first one or NotFound (:mod:`appliance.db.rows`).
rows = fetch_all
one = fetch_found


def update_analysis(db: sqlite_utils.Database, analysis_id: str, **values: Any) -> None:
    """Set columns of one analysis (names are ours, never user input), in a transaction."""
    columns = ", ".join(f"{name} = ?" for name in values)
    with transaction(db):
        db.execute(
            f"UPDATE analyses SET {columns} WHERE id = ?",  # noqa: S608 (names are ours)
            [*values.values(), analysis_id],
        )


def fail_analysis(db: sqlite_utils.Database, analysis_id: str, reason: str) -> None:
    """Mark an analysis failed with its reason (at most 2,000 characters)."""
    update_analysis(db, analysis_id, status="failed", error=reason[:2000], completed_at=now_iso())
