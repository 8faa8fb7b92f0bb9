"""Requesting an analysis: checks (engine, study, series, prior, completeness), the queued
row and its job, and the automatic request for a stable study.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ai.engines.none_engine import not_configured_message
from appliance.analysis import completeness
from appliance.analysis.engine import current_engine
from appliance.analysis.models import (
    AnalysisRequest,
)
from appliance.analysis.store import JOB_KIND, SYSTEM
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.db.connection import transaction
from appliance.db.rows import new_id, now_iso
from appliance.errors import AppError, Forbidden, InvalidInput, NotFound
from appliance.logs import get_logger
from appliance.studies import service as studies

log = get_logger("radiant.analysis")

Enqueue = Callable[[str, dict[str, Any], Actor], Any]


class EngineNotConfigured(AppError):
    """No AI engine: nothing is queued; the detail says what to configure."""

    status = 503
    title = "AI engine not configured"


def request_analysis(
    ctx: AppContext, body: AnalysisRequest, actor: Actor, enqueue: Enqueue
) -> tuple[str, str]:
    """Insert a queued analysis and its job; returns (analysis id, job id). Audited
    ``analysis.request``. 503 :class:`EngineNotConfigured` when the engine is ``none``."""
    db = ctx.pool.get()
    engine = current_engine(ctx)
    engine_name = engine.name
    engine.close()
    if engine_name == "none":
        audit.record(
            db,
            actor,
            "analysis.request",
            object_type="study",
            object_id=body.study_id,
            outcome="refused",
            detail={"reason": "no_engine"},
        )
        raise EngineNotConfigured(not_configured_message(ctx.settings.ai_model_path))
    study = studies.study_dates(db, body.study_id)
    if body.series_id is not None:
        series_study = studies.study_of_series(db, body.series_id)
        if series_study is None:
            raise NotFound("series not found")
        if series_study != study.id:
            raise InvalidInput(f"series {body.series_id} is not part of study {body.study_id}")
    if body.prior_study_id is not None:
        if body.analysis_type != "comparison":
            raise InvalidInput("prior_study_id is for a comparison analysis")
        prior = studies.study_dates(db, body.prior_study_id, "prior study")
        if prior.patient_id != study.patient_id or body.prior_study_id == study.id:
            raise InvalidInput("the prior study must be another study of the same patient")
    if body.analysis_type == "focused" and not (body.target or "").strip():
        raise InvalidInput("a focused analysis needs a target")
    arrived = completeness.arrival(db, body.study_id, ctx.settings.stable_age_s)
    partial = not arrived.complete
    if partial and (not body.analyse_partial or actor.role != Role.RADIOLOGIST.value):
        error: AppError = completeness.refusal(arrived)
        if body.analyse_partial:
            error = Forbidden("only a radiologist may analyse a study that is still arriving")
        audit.record(
            db,
            actor,
            "analysis.request",
            object_type="study",
            object_id=body.study_id,
            outcome="refused",
            detail={"reason": "study_incomplete", "instances": arrived.instances},
        )
        raise error
    analysis_id = new_id()
    with transaction(db):
        db.execute(
            "INSERT INTO analyses (id, study_id, series_id, prior_study_id, analysis_type,"
            " clinical_indication, target, status, stage, requested_by, created_at, partial,"
            " instance_count) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 'queued', ?, ?, ?, ?)",
            (
                analysis_id,
                body.study_id,
                body.series_id,
                body.prior_study_id,
                body.analysis_type,
                body.clinical_indication,
                body.target,
                actor.user_id,
                now_iso(),
                int(partial),
                arrived.instances,
            ),
        )
        audit.record(
            db,
            actor,
            "analysis.request",
            object_type="analysis",
            object_id=analysis_id,
            detail={
                "study_id": body.study_id,
                "analysis_type": body.analysis_type,
                "partial": partial,
                "instances": arrived.instances,
            },
        )
    payload = {"analysis_id": analysis_id, "actor": actor.name, "role": actor.role}
    queued = enqueue(JOB_KIND, payload, actor)
    return analysis_id, str(queued.job.id)


def auto_analysis_listener(ctx: AppContext, enqueue: Enqueue) -> Callable[[Any], None]:
    """A StabilityMonitor listener: a stable study gets a primary analysis when
    ``RADIANT_AI_AUTO`` is on (and an engine is configured)."""

    def on_stable(event: Any) -> None:
        if event.kind != "study" or not ctx.settings.ai_auto:
            return
        db = ctx.pool.get()
        if db.execute(
            "SELECT 1 FROM analyses WHERE study_id = ? AND analysis_type = 'primary'"
            " AND partial = 0",
            (event.id,),
        ).fetchone():
            return
        try:
            request_analysis(ctx, AnalysisRequest(study_id=event.id), SYSTEM, enqueue)
        except AppError as exc:
            log.info("analysis_auto_skipped", study_id=event.id, reason=exc.title)

    return on_stable
