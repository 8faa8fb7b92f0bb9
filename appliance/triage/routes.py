"""Triage endpoints: a study's urgency (everyone signed in) and its review (radiologists),
critical alerts, and turnaround times (per study and median per day)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import get_context
from appliance.triage import alerts, service, turnaround
from appliance.triage.models import (
    Alert,
    AlertAck,
    DayTurnaround,
    StudyTurnaround,
    StudyUrgency,
    UrgencyReview,
)

router = APIRouter(tags=["triage"])
Ctx = Annotated[AppContext, Depends(get_context)]
Readers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER)
Radiologist = Allow(Role.RADIOLOGIST)


@router.get("/api/studies/{study_id}/urgency", response_model=StudyUrgency)
def study_urgency(
    study_id: str, actor: Annotated[Actor, Depends(Readers)], ctx: Ctx
) -> StudyUrgency:
    """The study's urgency (AI output, UNVERIFIED until a radiologist confirms it)."""
    return service.study_urgency(ctx.pool.get(), study_id, actor)


@router.post(
    "/api/analysis/{analysis_id}/urgency/review",
    response_model=StudyUrgency,
    responses={404: {"description": "No such analysis"}, 409: {"description": "Nothing to review"}},
)
def review_urgency(
    analysis_id: str,
    body: UrgencyReview,
    actor: Annotated[Actor, Depends(Radiologist)],
    ctx: Ctx,
) -> StudyUrgency:
    """A radiologist confirms or clears the analysis' urgent or critical urgency (audited)."""
    return service.review(ctx.pool.get(), analysis_id, body, actor)


@router.get("/api/triage/alerts", response_model=list[Alert])
def open_alerts(actor: Annotated[Actor, Depends(Readers)], ctx: Ctx) -> list[Alert]:
    """Unacknowledged critical alerts (ids, modalities and times; no patient data)."""
    return alerts.open_alerts(ctx.pool.get())


@router.post(
    "/api/triage/alerts/{alert_id}/acknowledge",
    status_code=204,
    responses={404: {"description": "No such alert"}, 409: {"description": "Already done"}},
)
def acknowledge_alert(
    alert_id: str, body: AlertAck, actor: Annotated[Actor, Depends(Readers)], ctx: Ctx
) -> None:
    """Acknowledge a critical alert by name (audited ``triage.alert_ack``)."""
    alerts.acknowledge(ctx.pool.get(), alert_id, body.name, actor)


@router.get("/api/studies/{study_id}/turnaround", response_model=StudyTurnaround)
def study_turnaround(
    study_id: str, actor: Annotated[Actor, Depends(Readers)], ctx: Ctx
) -> StudyTurnaround:
    """When the study arrived, was complete, analysed, handed over and signed (ids and times)."""
    return turnaround.study_turnaround(ctx.pool.get(), study_id)


@router.get("/api/triage/turnaround", response_model=list[DayTurnaround])
def daily_turnaround(
    actor: Annotated[Actor, Depends(Readers)],
    ctx: Ctx,
    days: Annotated[int, Query(ge=1, le=turnaround.MAX_DAYS)] = 14,
) -> list[DayTurnaround]:
    """Median minutes from arrival to each step, per arrival day (UTC), oldest day first."""
    return turnaround.daily(ctx.pool.get(), days)
