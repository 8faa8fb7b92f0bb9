"""The ``analysis`` job: its handler (an analysis takes the outcome of its job) and the
reconciliation of analyses whose job ended without them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlite_utils

from ai.engines.base import EngineUnavailable
from appliance.analysis.engine import EngineFactory, current_engine
from appliance.analysis.pipeline import run_analysis
from appliance.analysis.store import JOB_KIND, SYSTEM, fail_analysis, rows, update_analysis
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.rows import now_iso
from appliance.jobs.models import Job, JobCancelled, JobFailed


def analysis_job(
    ctx: AppContext, engine_factory: EngineFactory | None = None
) -> Callable[[Job, Any], dict[str, Any]]:
    """The handler of ``analysis`` jobs (payload ``{"analysis_id", "actor", "role"}``)."""
    factory = engine_factory or (lambda: current_engine(ctx))

    def handle(job: Job, context: Any) -> dict[str, Any]:
        analysis_id = job.payload.get("analysis_id")
        if not isinstance(analysis_id, str) or not analysis_id:
            raise JobFailed("the payload names no analysis_id")
        db = ctx.pool.get()
        requested = rows(db, "SELECT requested_by FROM analyses WHERE id = ?", (analysis_id,))
        actor = Actor(
            name=str(job.payload.get("actor") or SYSTEM.name),
            role=job.payload.get("role"),
            user_id=requested[0]["requested_by"] if requested else None,
        )
        try:
            return run_analysis(ctx, analysis_id, actor, job, context, factory)
        except JobCancelled:
            asked = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job.id,))
            row = asked.fetchone()
            if row and row[0]:
                update_analysis(
                    db, analysis_id, status="cancelled", stage="cancelled", completed_at=now_iso()
                )
            else:  # the appliance is shutting down: the job fails, so does the analysis
                fail_analysis(db, analysis_id, "interrupted by a shutdown")
            raise
        except EngineUnavailable as exc:
            fail_analysis(db, analysis_id, str(exc))
            raise JobFailed(str(exc)) from None
        except JobFailed as exc:
            fail_analysis(db, analysis_id, str(exc) or "failed")
            raise
        except Exception as exc:
            fail_analysis(db, analysis_id, f"{exc.__class__.__name__}: {exc}")
            raise

    return handle


def reconcile(db: sqlite_utils.Database, analysis_id: str | None = None) -> int:
    """Analyses still queued/running whose job ended failed or cancelled (a restart, a cancel
    before start) take the job's outcome and reason. Returns how many were fixed."""
    sql = (
        "SELECT a.id, j.status, j.error FROM analyses a JOIN jobs j ON j.kind = ?"
        " AND json_extract(j.payload, '$.analysis_id') = a.id"
        " WHERE a.status IN ('queued', 'running') AND j.status IN ('failed', 'cancelled')"
    )
    params: list[Any] = [JOB_KIND]
    if analysis_id is not None:
        sql += " AND a.id = ?"
        params.append(analysis_id)
    fixed = 0
    for row in rows(db, sql, params):
        status = "cancelled" if row["status"] == "cancelled" else "failed"
        update_analysis(
            db,
            row["id"],
            status=status,
            stage=status,
            error=row["error"] or status,
            completed_at=now_iso(),
        )
        fixed += 1
    return fixed
