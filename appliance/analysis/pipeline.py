"""The pipeline of one analysis: series, images, prompt, engine call (audited), parsing and
the safety layer, then the stored results and the triage alert.
"""

from __future__ import annotations

import json
from typing import Any

from ai.engines.base import EngineError, EngineRequest, engine_parts
from ai.imaging import images_sha256
from ai.parsing import parse_answer
from ai.prompts import (
    PromptRequest,
    build_comparison,
    build_focused,
    build_primary,
)
from ai.safety import apply_safety
from ai.urgency import load_critical_list
from appliance.analysis import egress
from appliance.analysis.engine import EngineFactory
from appliance.analysis.preparation import Prepared, prepare_series
from appliance.analysis.results import store_results
from appliance.analysis.selection import choose_series, find_prior, modality_group
from appliance.analysis.store import one, update_analysis
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.rows import now_iso
from appliance.jobs.models import Job, JobFailed
from appliance.triage import alerts as triage_alerts


def _prompt(
    analysis: dict[str, Any], modality: str, count: int, prior_count: int, indication: str | None
) -> PromptRequest:
    kind = analysis["analysis_type"]
    if kind == "comparison":
        return build_comparison(
            modality=modality,
            prior_image_count=prior_count,
            current_image_count=count,
            clinical_indication=indication,
        )
    if kind == "focused":
        return build_focused(
            modality=modality,
            target=analysis["target"] or "",
            clinical_indication=indication,
        )
    return build_primary(modality=modality, image_count=count, clinical_indication=indication)


def run_analysis(
    ctx: AppContext,
    analysis_id: str,
    actor: Actor,
    job: Job | None,
    context: Any,
    engine_factory: EngineFactory,
) -> dict[str, Any]:
    """The pipeline of one analysis (see the module docstring)."""
    db = ctx.pool.get()
    analysis = one(db, "SELECT * FROM analyses WHERE id = ?", (analysis_id,), "analysis")
    update_analysis(
        db, analysis_id, status="running", stage="preparing", started_at=now_iso(), error=None
    )
    context.progress("preparing", 0.05)
    series_id = analysis["series_id"] or choose_series(db, analysis["study_id"])
    current = prepare_series(ctx, series_id, job.id if job else None)
    context.check_cancelled()
    prior: Prepared | None = None
    prior_study = analysis["prior_study_id"]
    if analysis["analysis_type"] == "comparison":
        prior_study = prior_study or find_prior(db, analysis["study_id"], current.modality)
        if prior_study is None:
            raise JobFailed("no earlier study of this patient with the same modality to compare")
        prior_series = choose_series(db, prior_study, modality_group(current.modality))
        prior = prepare_series(ctx, prior_series, job.id if job else None)
    update_analysis(db, analysis_id, series_id=series_id, prior_study_id=prior_study)
    if analysis["analysis_type"] == "focused":
        current = current.focused()
    jpegs = [i.data for i in current.images.images]
    prior_jpegs = [i.data for i in prior.images.images] if prior else []
    burned_in = current.burned_in or (prior is not None and prior.burned_in)
    outbound = egress.plan(db, ctx.settings, actor, analysis, burned_in=burned_in)
    prompt = _prompt(analysis, current.modality, len(jpegs), len(prior_jpegs), outbound.indication)
    sha = images_sha256([*prior_jpegs, *jpegs])
    parts = engine_parts(prompt, jpegs, prior_jpegs)
    context.check_cancelled()
    update_analysis(
        db,
        analysis_id,
        stage="inferring",
        prompt_id=prompt.template_id,
        prompt_version=str(prompt.template_version),
        images_sha256=sha,
    )
    context.progress("inferring", 0.3)
    engine = engine_factory()
    call = {
        "study_id": analysis["study_id"],
        "analysis_id": analysis_id,
        "prompt_id": prompt.template_id,
        "prompt_version": prompt.template_version,
        "images_sha256": sha,
        "image_count": len(jpegs) + len(prior_jpegs),
        "cloud": outbound.cloud,
        "scrub": list(outbound.scrub_actions),
        "burned_in": outbound.burned_in,
    }
    try:
        response = engine.generate(EngineRequest(parts=parts, request_id=analysis_id))
    except EngineError as exc:
        audit.record(
            db,
            actor,
            "analysis.model_call",
            object_type="analysis",
            object_id=analysis_id,
            outcome="failed",
            detail={**call, "engine": engine.name, "error": exc.__class__.__name__},
        )
        raise JobFailed(f"{exc.__class__.__name__}: {exc}") from None
    finally:
        engine.close()
    audit.record(
        db,
        actor,
        "analysis.model_call",
        object_type="analysis",
        object_id=analysis_id,
        detail={
            **call,
            "engine": response.engine,
            "route": response.route,
            "model_id": response.model_id,
            "model_revision": response.model_revision,
            "latency_ms": round(response.latency_ms),
            "tokens_in": response.tokens_in,
            "tokens_out": response.tokens_out,
            "finish_reason": response.finish_reason,
            "fallback": response.fallback_reason is not None,
            "request_sha256": response.request_sha256,
        },
    )
    if outbound.cloud:
        update_analysis(
            db,
            analysis_id,
            request_sha256=response.request_sha256,
            request_image_count=len(jpegs) + len(prior_jpegs),
            request_scrub=json.dumps(list(outbound.scrub_actions)),
        )
    context.check_cancelled()
    update_analysis(db, analysis_id, stage="parsing")
    context.progress("parsing", 0.8)
    parsed = parse_answer(response.text, expect=prompt.expect, slice_count=len(jpegs))
    safe = apply_safety(parsed, load_critical_list(ctx.settings.triage_critical_list))
    count = store_results(db, analysis_id, safe, current)
    urgency = safe.urgency.level if safe.urgency is not None else None
    status = "needs_review" if safe.needs_review else "completed"
    update_analysis(
        db,
        analysis_id,
        status=status,
        stage="done",
        engine=response.engine,
        model_id=response.model_id,
        model_revision=response.model_revision,
        tokens_in=response.tokens_in,
        tokens_out=response.tokens_out,
        latency_ms=round(response.latency_ms),
        raw_output=response.text,
        overall_impression=safe.overall_impression,
        disclaimer=safe.disclaimer,
        verification_flag=safe.verification_flag,
        urgency=urgency,
        urgency_detail=safe.urgency.model_dump_json() if safe.urgency is not None else None,
        completed_at=now_iso(),
    )
    audit.record(
        db,
        actor,
        "analysis.complete",
        object_type="analysis",
        object_id=analysis_id,
        detail={"status": status, "findings": count, "urgency": urgency},
    )
    triage_alerts.raise_for(db, analysis_id)
    return {"analysis_id": analysis_id, "status": status, "findings": count}
