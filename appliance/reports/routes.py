"""Report endpoints; who may call each comes from the one policy table
(:mod:`appliance.reports.policy`), which the service enforces action by action."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.context import AppContext
from appliance.dependencies import get_context
from appliance.export import findings_sr
from appliance.reports import policy, service
from appliance.reports.handover_models import HandOverOut
from appliance.reports.history_models import ReportVersions
from appliance.reports.models import (
    FinalizeRequest,
    ReportCreate,
    ReportOut,
    ReportSummary,
    ReportUpdate,
    ReviewRequest,
)
from appliance.reports.policy import ReportAction

router = APIRouter(prefix="/api/reports", tags=["reports"])
Ctx = Annotated[AppContext, Depends(get_context)]
Creators = Allow(*policy.roles(ReportAction.CREATE_DRAFT))
# One PATCH serves draft edits and addenda: the service tells them apart.
Editors = Allow(*policy.roles(ReportAction.EDIT_DRAFT, ReportAction.ADDENDUM))
Readers = Allow(*policy.roles(ReportAction.READ))
Signers = Allow(*policy.roles(ReportAction.SIGN))
Reviewers = Allow(*policy.roles(ReportAction.REVIEW_FINDINGS))
HandOvers = Allow(*policy.roles(ReportAction.HAND_OVER))
Reader = Annotated[Actor, Depends(Readers)]


@router.post("", response_model=ReportOut, status_code=status.HTTP_201_CREATED)
def create_report(
    body: ReportCreate, actor: Annotated[Actor, Depends(Creators)], ctx: Ctx
) -> ReportOut:
    """Draft version 1 from the analysis (findings, measurements, impression, provenance), or
    an empty structured draft; the header and technique come from the study. A draft from an
    analysis also stores its findings SR in the study (series "RadiantAI findings, UNVERIFIED")."""
    out = service.create(
        ctx.pool.get(),
        ctx.store,
        body,
        actor,
        facility=ctx.settings.site_name,
        language=ctx.settings.report_language,
    )
    findings_sr.publish(ctx, out.id, actor)
    return out


@router.get("/study/{study_id}", response_model=list[ReportSummary])
def list_study_reports(study_id: str, actor: Reader, ctx: Ctx) -> list[ReportSummary]:
    """The study's reports, newest first."""
    return service.for_study(ctx.pool.get(), study_id, actor)


@router.get("/{report_id}", response_model=ReportOut)
def get_report(report_id: str, actor: Reader, ctx: Ctx) -> ReportOut:
    """The report with the content of its current version."""
    return service.get(ctx.pool.get(), report_id, actor)


@router.get("/{report_id}/versions", response_model=ReportVersions)
def list_versions(report_id: str, actor: Reader, ctx: Ctx) -> ReportVersions:
    """Every version with author, time, hashes and the changes from the version before; the
    hash chain is checked (``chain_ok``)."""
    return service.versions(ctx.pool.get(), report_id, actor)


@router.patch(
    "/{report_id}",
    response_model=ReportOut,
    responses={409: {"description": "Signed content is locked, or expected_version is stale"}},
)
def update_report(
    report_id: str, body: ReportUpdate, actor: Annotated[Actor, Depends(Editors)], ctx: Ctx
) -> ReportOut:
    """Save a new immutable version. A draft takes section edits; a signed report takes only
    an ``addendum`` (radiologists), which makes it ``amended`` (and stores a new verified
    findings SR)."""
    out = service.update(ctx.pool.get(), report_id, body, actor)
    if out.status != "draft":
        findings_sr.publish(ctx, report_id, actor)
    return out


@router.post(
    "/{report_id}/review",
    response_model=ReportOut,
    responses={409: {"description": "The report is signed and its content is locked"}},
)
def review_item(
    report_id: str, body: ReviewRequest, actor: Annotated[Actor, Depends(Reviewers)], ctx: Ctx
) -> ReportOut:
    """A radiologist's decision on one AI item of a draft (audited ``report.review``, a new
    version): accept or reject a finding, or keep a flagged impression as it stands."""
    return service.review_finding(ctx.pool.get(), report_id, body.item, body.decision, actor)


@router.patch(
    "/{report_id}/finalize",
    response_model=ReportOut,
    responses={
        409: {
            "description": "Signed already, expected_version is stale, or items the safety "
            "layer flagged await a decision (``undecided``: their ids; ``items``: each with "
            "its flags)"
        },
        422: {"description": "ai_findings_reviewed is not true"},
    },
)
def finalize_report(
    report_id: str, body: FinalizeRequest, actor: Annotated[Actor, Depends(Signers)], ctx: Ctx
) -> ReportOut:
    """Sign the report (radiologists only): requires ``{"ai_findings_reviewed": true}`` and a
    decision on every flagged item (``POST .../review``); records signer and time and locks
    the content. A report from an analysis also stores its verified findings SR in the study
    (series "RadiantAI findings, VERIFIED"; the UNVERIFIED one is kept)."""
    out = service.finalize(ctx.pool.get(), report_id, body, actor)
    findings_sr.publish(ctx, report_id, actor)
    return out


@router.post(
    "/{report_id}/handover",
    response_model=HandOverOut,
    responses={409: {"description": "The report is signed already"}},
)
def hand_over(
    report_id: str, actor: Annotated[Actor, Depends(HandOvers)], ctx: Ctx
) -> HandOverOut:
    """Mark a draft ready for a radiologist (technicians and admins; audited
    ``report.handover``): the worklist's "handed over" filter and the report screen show it."""
    return HandOverOut(**service.hand_over(ctx.pool.get(), report_id, actor))


@router.get("/{report_id}/handover", response_model=HandOverOut | None)
def handed_over(report_id: str, actor: Reader, ctx: Ctx) -> HandOverOut | None:
    """The latest hand-over of the report, or null when it was never handed over."""
    db = ctx.pool.get()
    service.load(db, report_id)  # 404 for an unknown report
    found = service.handed_over(db, report_id)
    return HandOverOut(**found) if found else None
