"""Study endpoints: upload, worklist, study, series, instances, original files and previews.

Admins, radiologists and technicians upload; everyone signed in (viewers too) reads. Reads
take this thread's own database connection (the endpoint's thread, not the dependency's).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import FileResponse

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import get_context
from appliance.dicom.preview import Preset
from appliance.paging import Limit, Offset
from appliance.studies import service, upload
from appliance.studies.models import (
    InstanceOut,
    PatientStudies,
    SeriesOut,
    StudyDetail,
    StudyPage,
    UploadReport,
    WorklistSort,
    WorklistStatus,
)
from appliance.studies.worklist_filters import site_day

router = APIRouter(tags=["studies"])
Ctx = Annotated[AppContext, Depends(get_context)]
Uploaders = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN)
Readers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER)
Reader = Annotated[Actor, Depends(Readers)]
_STATUS_HELP = (
    "One state: receiving (images arriving); stable (complete: no new image for the stability"
    " delay); volume_ready (a volume is built); analyzing (the newest AI analysis is queued or"
    " running); unreported (no signed report); draft_ready (an unsigned draft from a finished"
    " AI analysis, not handed over); handed_over (an unsigned draft handed over to a"
    " radiologist); signed (a final or amended report); synced (every image replicated)."
    " Any other value is refused (422)."
)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [upload.FIELD],
                    "properties": {
                        upload.FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "DICOM Part 10 files and/or .zip archives of them",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/api/studies/upload",
    response_model=UploadReport,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_BODY,
    responses={
        413: {"description": "Over RADIANT_UPLOAD_MAX_MB; files completed before are kept"},
        415: {"description": "Not multipart/form-data"},
        422: {"description": "No files, or a malformed or cut-off body"},
    },
)
async def upload_studies(
    request: Request, actor: Annotated[Actor, Depends(Uploaders)], ctx: Ctx
) -> UploadReport:
    """Store DICOM files and zip archives (field ``files``), streamed and ingested one by one.

    Each file or archive entry gets an outcome: stored, duplicate, quarantined (malformed DICOM,
    kept with its reason) or rejected (not DICOM, unsafe or oversized archive entry).
    """
    return await upload.receive(
        request.stream(),
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
        ingestor=ctx.ingestor,
        settings=ctx.settings,
        actor=actor,
    )


@router.get("/api/studies", response_model=StudyPage)
def list_studies(
    actor: Reader,
    ctx: Ctx,
    status_: Annotated[
        WorklistStatus | None, Query(alias="status", description=_STATUS_HELP)
    ] = None,
    modality: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,16}$")] = None,
    search: Annotated[str | None, Query(max_length=128, description="name or MRN words")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    sort: Annotated[WorklistSort, Query(description="urgency (default), arrival, ...")] = (
        "urgency"
    ),
    urgent: Annotated[bool, Query(description="only AI-urgent or critical studies")] = False,
    today: Annotated[
        bool, Query(description="only studies whose DICOM StudyDate is today at the site")
    ] = False,
    arrived_today: Annotated[
        bool, Query(description="only studies that arrived today (site time zone)")
    ] = False,
) -> StudyPage:
    """The worklist with the patients: unreported critical and urgent studies first, then
    newest arrival first (``sort`` chooses another order). Filters combine with AND; ``total``
    counts every study that matches, whatever ``limit`` and ``offset``. "Today" is the day in
    the site's time zone (``RADIANT_TIMEZONE``)."""
    return service.worklist(
        ctx.pool.get(),
        actor,
        status=status_,
        modality=modality,
        search=search,
        limit=limit,
        offset=offset,
        sort=sort,
        urgent=urgent,
        today=today,
        arrived_today=arrived_today,
        day=site_day(ctx.settings.timezone),
    )


@router.get("/api/studies/patient/{patient_id}", response_model=PatientStudies)
def list_patient_studies(patient_id: str, actor: Reader, ctx: Ctx) -> PatientStudies:
    """A patient's studies (``patient_id`` is our patient id, not the MRN), newest first."""
    return service.patient_studies(ctx.pool.get(), patient_id, actor)


@router.get("/api/studies/{study_id}", response_model=StudyDetail)
def get_study(study_id: str, actor: Reader, ctx: Ctx) -> StudyDetail:
    """A study with its patient and series."""
    return service.get_study(ctx.pool.get(), study_id, actor)


@router.get("/api/studies/{study_id}/series", response_model=list[SeriesOut])
def list_series(study_id: str, actor: Reader, ctx: Ctx) -> list[SeriesOut]:
    return service.study_series(ctx.pool.get(), study_id, actor)


@router.get("/api/series/{series_id}/instances", response_model=list[InstanceOut])
def list_instances(series_id: str, actor: Reader, ctx: Ctx) -> list[InstanceOut]:
    """Instances by instance number, then by position along the slice normal."""
    return service.series_instances(ctx.pool.get(), series_id, actor)


@router.get(
    "/api/instances/{instance_id}/file",
    response_class=FileResponse,
    responses={200: {"content": {"application/dicom": {}}, "description": "The original file"}},
)
def get_instance_file(instance_id: str, actor: Reader, ctx: Ctx) -> FileResponse:
    """The instance exactly as received (DICOM Part 10); ``X-Content-SHA256`` to check it.

    An instance evicted to the bucket is fetched back first when the box is online."""
    found = service.instance_file(ctx.pool.get(), ctx.store, instance_id, actor)
    return FileResponse(
        found.path,
        media_type="application/dicom",
        filename=f"{found.instance_id}.dcm",
        headers={"Cache-Control": "no-store", "X-Content-SHA256": found.sha256},
    )


@router.get(
    "/api/instances/{instance_id}/preview.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "One frame as PNG"},
        422: {"description": "Unknown preset, frame out of range or a bad center/width"},
    },
)
def get_instance_preview(
    instance_id: str,
    actor: Reader,
    ctx: Ctx,
    preset: Annotated[
        Preset,
        Query(description="CT window (HU) or auto: the file's own VOI, else percentiles"),
    ] = "auto",
    frame: Annotated[int, Query(ge=0, le=1_000_000, description="0-based frame index")] = 0,
    center: Annotated[
        float | None,
        Query(description="Explicit window center in modality units (HU for CT), with width; "
              "overrides preset. |center| <= 1e6"),
    ] = None,
    width: Annotated[
        float | None,
        Query(description="Explicit window width (1 to 2e6, PS3.3 C.11.2.1.2.1 LINEAR), "
              "with center"),
    ] = None,
) -> Response:
    """One frame rendered to an 8-bit PNG; the window used is told in ``X-Window-*`` headers.

    CT presets apply to CT in Hounsfield units only; other images are shown with ``auto``.
    ``center`` and ``width`` together window any grey image explicitly (``X-Window-Source:
    explicit``); one without the other, a non-finite value or a width below 1 is a 422 problem.
    """
    image = service.instance_preview(
        ctx.pool.get(), ctx.store, instance_id, actor, frame=frame, preset=preset,
        center=center, width=width,
    )
    headers = {
        "Cache-Control": "no-store",
        "X-Frame": str(image.frame),
        "X-Frame-Count": str(image.frames),
        "X-Window-Source": image.source,
    }
    if image.preset:
        headers["X-Window-Preset"] = image.preset
    if image.assumption:
        headers["X-Window-Assumption"] = image.assumption
    if image.decoder:
        headers["X-Pixel-Decoder"] = image.decoder  # a fallback decoder was needed
    if image.window_center is not None and image.window_width is not None:
        headers["X-Window-Center"] = f"{image.window_center:g}"
        headers["X-Window-Width"] = f"{image.window_width:g}"
    return Response(content=image.png, media_type="image/png", headers=headers)
