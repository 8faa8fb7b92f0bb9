"""Export endpoints: PDF, JSON, DICOM SR (per report or per study), FHIR R4, send to PACS.

Who may export and who may send to a PACS comes from the report policy table
(:mod:`appliance.reports.policy`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from fastapi.responses import JSONResponse

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.context import AppContext
from appliance.dependencies import get_context
from appliance.export import service
from appliance.export.models import ReportExport, SendRequest, SendResult
from appliance.reports import policy
from appliance.reports.policy import ReportAction
from appliance.reports.service import StoredReport

router = APIRouter(prefix="/api/export", tags=["export"])
Ctx = Annotated[AppContext, Depends(get_context)]
Readers = Allow(*policy.roles(ReportAction.EXPORT))
Senders = Allow(*policy.roles(ReportAction.SEND))
Reader = Annotated[Actor, Depends(Readers)]
_NO_STORE = {"Cache-Control": "no-store"}


def _name(report: StoredReport, suffix: str) -> str:
    return f"report-{report.row['id']}-v{report.version['version']}.{suffix}"


def _file(data: bytes, media_type: str, filename: str, report: StoredReport) -> Response:
    return Response(
        content=data,
        media_type=media_type,
        headers={
            **_NO_STORE,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Report-Version": str(report.version["version"]),
            "X-Report-Status": report.status,
        },
    )


@router.get(
    "/report/{report_id}/pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The report as PDF"}},
)
def report_pdf(report_id: str, actor: Reader, ctx: Ctx) -> Response:
    """The current version as PDF; watermarked ``AI DRAFT - NOT REVIEWED BY A RADIOLOGIST``
    on every page until signed (page size: RADIANT_REPORT_PAGE_SIZE)."""
    data, report = service.export_pdf(ctx, report_id, actor)
    return _file(data, "application/pdf", _name(report, "pdf"), report)


@router.get("/report/{report_id}/json", response_model=ReportExport)
def report_json(report_id: str, actor: Reader, ctx: Ctx) -> ReportExport:
    """The report as JSON (format ``radiantai.report`` v1): sections, findings, measurements,
    versions with hashes, signature and AI provenance."""
    return service.export_json(ctx, report_id, actor)


_DICOM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/dicom": {}}, "description": "DICOM Part 10 SR"}
}


@router.get("/report/{report_id}/dicom-sr", response_class=Response, responses=_DICOM)
def report_sr(report_id: str, actor: Reader, ctx: Ctx) -> Response:
    """The current version as a Comprehensive 3D SR (TID 1500 Measurement Report);
    VerificationFlag UNVERIFIED until signed."""
    data, report = service.export_sr(ctx, report_id, actor)
    return _file(data, "application/dicom", _name(report, "dcm"), report)


@router.get("/study/{study_id}/dicom-sr", response_class=Response, responses=_DICOM)
def study_sr(study_id: str, actor: Reader, ctx: Ctx) -> Response:
    """The SR of the study's most recently changed report (404 when it has none)."""
    data, report = service.export_study_sr(ctx, study_id, actor)
    return _file(data, "application/dicom", _name(report, "dcm"), report)


@router.get(
    "/report/{report_id}/fhir",
    response_class=JSONResponse,
    responses={200: {"content": {"application/fhir+json": {}}, "description": "FHIR R4 Bundle"}},
)
def report_fhir(report_id: str, actor: Reader, ctx: Ctx) -> JSONResponse:
    """A FHIR R4 Bundle: DiagnosticReport (with the PDF), Patient, ImagingStudy, Observations."""
    bundle: dict[str, Any] = service.export_fhir(ctx, report_id, actor)
    return JSONResponse(bundle, media_type="application/fhir+json", headers=_NO_STORE)


@router.post(
    "/report/{report_id}/send",
    response_model=SendResult,
    responses={
        202: {"model": SendResult, "description": "The peer did not take it: queued for retry"},
        422: {"description": "Unknown peer"},
        502: {"description": "The peer refused the objects (not retried)"},
    },
)
def send_report(
    report_id: str,
    body: SendRequest,
    actor: Annotated[Actor, Depends(Senders)],
    ctx: Ctx,
    response: Response,
) -> SendResult:
    """C-STORE the SR and an Encapsulated PDF of the current version to a configured peer.
    200 when stored; 202 when the peer is unreachable: the send stays queued and is retried."""
    result = service.send(ctx, report_id, body.peer, actor)
    if result.status == "queued":
        response.status_code = status.HTTP_202_ACCEPTED
    return result
