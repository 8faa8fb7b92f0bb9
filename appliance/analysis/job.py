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
from appliance.jobs import service as jobs
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
            if jobs.cancel_requested(db, job.id):
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
    sql = "SELECT id FROM analyses WHERE status IN ('queued', 'running')"
    params: list[Any] = []
    if analysis_id is not None:
        sql += " AND id = ?"
        params.append(analysis_id)
    pending = [str(row["id"]) for row in rows(db, sql, params)]
    fixed = 0
    for ended in jobs.ended_unsuccessfully(db, JOB_KIND, "analysis_id", pending):
        status = "cancelled" if ended.status == "cancelled" else "failed"
        update_analysis(
            db,
            ended.subject,
            status=status,
            stage=status,
            error=ended.error or status,
            completed_at=now_iso(),
        )
        fixed += 1
    return fixed
