"""Report endpoints. Admins, radiologists and technicians draft and edit; only radiologists sign
(and add addenda); everyone signed in reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import get_context
from appliance.reports import service
from appliance.reports.models import (
    FinalizeRequest,
    ReportCreate,
    ReportOut,
    ReportSummary,
    ReportUpdate,
    ReportVersions,
)

router = APIRouter(prefix="/api/reports", tags=["reports"])
Ctx = Annotated[AppContext, Depends(get_context)]
Writers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN)
Readers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER)
Signers = Allow(Role.RADIOLOGIST)
Reader = Annotated[Actor, Depends(Readers)]


@router.post("", response_model=ReportOut, status_code=status.HTTP_201_CREATED)
def create_report(
    body: ReportCreate, actor: Annotated[Actor, Depends(Writers)], ctx: Ctx
) -> ReportOut:
    """Draft version 1 from the analysis (findings, measurements, impression, provenance), or
    an empty structured draft; the header and technique come from the study."""
    return service.create(ctx.pool.get(), ctx.store, body, actor, facility=ctx.settings.site_name)


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
    report_id: str, body: ReportUpdate, actor: Annotated[Actor, Depends(Writers)], ctx: Ctx
) -> ReportOut:
    """Save a new immutable version. A draft takes section edits; a signed report takes only
    an ``addendum`` (radiologists), which makes it ``amended``."""
    return service.update(ctx.pool.get(), report_id, body, actor)


@router.patch(
    "/{report_id}/finalize",
    response_model=ReportOut,
    responses={422: {"description": "ai_findings_reviewed is not true"}},
)
def finalize_report(
    report_id: str, body: FinalizeRequest, actor: Annotated[Actor, Depends(Signers)], ctx: Ctx
) -> ReportOut:
    """Sign the report (radiologists only): requires ``{"ai_findings_reviewed": true}``;
    records signer and time and locks the content."""
    return service.finalize(ctx.pool.get(), report_id, body, actor)
