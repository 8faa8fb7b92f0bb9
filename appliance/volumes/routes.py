"""Volume endpoints: build (admins, radiologists, technicians), then read, download and view
(everyone signed in). Every read is audited by the service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import FileResponse, JSONResponse

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import Jobs, get_context
from appliance.dicom.preview import Preset
from appliance.jobs.models import JobAccepted, JobStatus
from appliance.jobs.routes import accepted as accepted_response
from appliance.volumes import service
from appliance.volumes.models import VolumeBuildRequest, VolumeOut, VolumesBuilt
from appliance.volumes.render import Plane

router = APIRouter(tags=["volumes"])
Ctx = Annotated[AppContext, Depends(get_context)]
Builders = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN)
Readers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER)
Reader = Annotated[Actor, Depends(Readers)]
_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "PNG image"}
}


@router.post(
    "/api/volumes",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
    responses={
        201: {"model": VolumesBuilt, "description": "The volumes exist and are current"},
        202: {"model": JobAccepted, "description": "A job builds them: poll status_url"},
        404: {"description": "No such series"},
    },
)
def build_volumes(
    body: VolumeBuildRequest,
    actor: Annotated[Actor, Depends(Builders)],
    ctx: Ctx,
    runner: Jobs,
) -> JSONResponse:
    """Build the volumes of a series in the background (202 with the job), or answer 201 with
    them when they were already built from the series' current instances. Once the job is
    done, ``GET /api/jobs/{id}`` lists the volume ids in ``result.volume_ids``."""
    found = service.request_build(ctx, body.series_id, actor, runner.enqueue)
    if found.volumes is not None:
        built = VolumesBuilt(series_id=found.series_id, volumes=found.volumes)
        return JSONResponse(built.model_dump(mode="json"), status_code=status.HTTP_201_CREATED)
    assert found.job_id is not None and found.job_status is not None
    accepted = JobAccepted(
        job_id=found.job_id,
        status=JobStatus(found.job_status),
        status_url=f"/api/jobs/{found.job_id}",
    )
    return accepted_response(accepted)


@router.get("/api/volumes/{volume_id}", response_model=VolumeOut)
def get_volume(volume_id: str, actor: Reader, ctx: Ctx) -> VolumeOut:
    """Status, geometry (LPS, mm) and QA notes of one volume."""
    return service.get_volume(ctx.pool.get(), volume_id, actor)


@router.get(
    "/api/volumes/{volume_id}/nifti",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/gzip": {}}, "description": "The .nii.gz file"},
        409: {"description": "The volume is not ready (not_applicable or failed)"},
    },
)
def get_volume_nifti(volume_id: str, actor: Reader, ctx: Ctx) -> FileResponse:
    """The volume as NIfTI-1 (``.nii.gz``, RAS affine in qform and sform); ``X-Content-SHA256``
    to check it."""
    found = service.volume_nifti(ctx, volume_id, actor)
    return FileResponse(
        found.path,
        media_type="application/gzip",
        filename=f"{found.volume_id}.nii.gz",
        headers={"Cache-Control": "no-store", "X-Content-SHA256": found.sha256},
    )


@router.get(
    "/api/volumes/{volume_id}/slice.png",
    response_class=Response,
    responses={
        **_PNG,
        422: {"description": "Index out of range, unknown plane or preset, bad center/width"},
    },
)
def get_volume_slice(
    volume_id: str,
    actor: Reader,
    ctx: Ctx,
    plane: Annotated[Plane, Query(description="axial, coronal or sagittal")] = "axial",
    index: Annotated[
        int | None, Query(ge=0, le=100_000, description="0-based; default the middle slice")
    ] = None,
    preset: Annotated[
        Preset, Query(description="CT window in HU (CT only) or auto: 1st-99th percentiles")
    ] = "auto",
    center: Annotated[
        float | None,
        Query(description="Explicit window center (volume units, HU for CT), with width; "
              "overrides preset. |center| <= 1e6"),
    ] = None,
    width: Annotated[
        float | None, Query(description="Explicit window width (1 to 2e6), with center")
    ] = None,
) -> Response:
    """One slice in radiological display (see ``appliance.volumes.render``) with square
    pixels; ``X-Slice-*``, ``X-Pixel-Spacing-MM`` and ``X-Window-*`` tell what is shown.
    ``center`` with ``width`` windows explicitly; one alone or a bad value is a 422 problem."""
    image = service.volume_slice(
        ctx, volume_id, actor, plane=plane, index=index, preset=preset, center=center, width=width
    )
    headers = {
        "Cache-Control": "no-store",
        "X-Slice-Plane": image.plane,
        "X-Slice-Index": str(image.index),
        "X-Slice-Count": str(image.count),
        "X-Pixel-Spacing-MM": f"{image.pixel_mm:.6g}",
        "X-Window-Source": image.source,
    }
    if image.preset:
        headers["X-Window-Preset"] = image.preset
    if image.window is not None:
        headers["X-Window-Center"] = f"{image.window.center:g}"
        headers["X-Window-Width"] = f"{image.window.width:g}"
    return Response(content=image.png, media_type="image/png", headers=headers)


@router.get("/api/series/{series_id}/volumes", response_model=list[VolumeOut])
def list_series_volumes(series_id: str, actor: Reader, ctx: Ctx) -> list[VolumeOut]:
    """The volumes of a series (empty before the first build), by ordinal."""
    return service.series_volumes(ctx.pool.get(), series_id, actor)


@router.get("/api/series/{series_id}/thumbnail.png", response_class=Response, responses=_PNG)
def get_series_thumbnail(series_id: str, actor: Reader, ctx: Ctx) -> Response:
    """A small PNG (at most 128 px): the middle slice of the largest volume, in the plane it
    was acquired in; before a volume exists, the middle image as received."""
    png = service.series_thumbnail(ctx, series_id, actor)
    return Response(content=png, media_type="image/png", headers={"Cache-Control": "no-store"})
