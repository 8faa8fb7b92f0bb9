"""DICOMweb endpoints under ``/dicom-web`` (QIDO-RS, WADO-RS, STOW-RS) and WADO-URI at
``/wado`` (PS3.18). Reads take a bearer token or the screen's session cookie and the roles of
the studies API (everyone signed in); storing takes a bearer token and the uploading roles.

This module holds search (QIDO-RS, PS3.18 10.6), retrieve and metadata (WADO-RS, 10.4) and store
(STOW-RS, 10.5); rendered resources are :mod:`appliance.dicomweb.rendered`, WADO-URI
:mod:`appliance.dicomweb.wado_uri`, what they share :mod:`appliance.dicomweb.http`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.dicom import query as q
from appliance.dicomweb import rendered, service, stow
from appliance.dicomweb.http import (
    JSON_DOC,
    MULTI_DOC,
    Ctx,
    Doc,
    FrameList,
    Reader,
    Series,
    Sop,
    Storer,
    Study,
    base_url,
    json_response,
    located,
    metadata_response,
    multipart_response,
)
from appliance.dicomweb.models import DICOM, DICOM_JSON, Located
from appliance.dicomweb.wado_uri import uri_router as uri_router
from appliance.errors import PayloadTooLarge

router = APIRouter(prefix="/dicom-web", tags=["dicomweb"])


def _search(
    request: Request, ctx: Ctx, actor: Actor, level: q.Level, scope: dict[str, str]
) -> JSONResponse:
    db = ctx.pool.get()
    found, ignored = service.search(
        db,
        actor,
        level,
        request.query_params.multi_items(),
        scope,
        base_url(request),
        ctx.settings.dicom_ae_title,
    )
    return json_response(found, ignored)


@router.get("/studies", responses=JSON_DOC)
def search_studies(request: Request, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS studies: attribute matching (``PatientName=Doe*``, ``StudyDate=20200101-``,
    ``ModalitiesInStudy=CT``, UID lists...), ``fuzzymatching``, ``includefield``, ``limit``,
    ``offset``."""
    return _search(request, ctx, actor, q.Level.STUDY, {})


@router.get("/series", responses=JSON_DOC)
def search_all_series(request: Request, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS series of every study."""
    return _search(request, ctx, actor, q.Level.SERIES, {})


@router.get("/instances", responses=JSON_DOC)
def search_all_instances(request: Request, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS instances of every study."""
    return _search(request, ctx, actor, q.Level.IMAGE, {})


@router.get("/studies/{study}/series", responses=JSON_DOC)
def search_series(request: Request, study: Study, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS series of one study."""
    return _search(request, ctx, actor, q.Level.SERIES, {"StudyInstanceUID": study})


@router.get("/studies/{study}/instances", responses=JSON_DOC)
def search_study_instances(request: Request, study: Study, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS instances of one study."""
    return _search(request, ctx, actor, q.Level.IMAGE, {"StudyInstanceUID": study})


@router.get("/studies/{study}/series/{series}/instances", responses=JSON_DOC)
def search_series_instances(
    request: Request, study: Study, series: Series, actor: Reader, ctx: Ctx
) -> JSONResponse:
    """QIDO-RS instances of one series."""
    scope = {"StudyInstanceUID": study, "SeriesInstanceUID": series}
    return _search(request, ctx, actor, q.Level.IMAGE, scope)


def _retrieve(request: Request, found: list[Located]) -> StreamingResponse:
    syntax = service.choose_syntax(request.headers.get("accept"))
    service.check_syntax(found, syntax)
    return multipart_response(service.instance_parts(found, syntax, base_url(request)), DICOM)


@router.get("/studies/{study}", response_class=Response, responses=MULTI_DOC)
def retrieve_study(request: Request, study: Study, actor: Reader, ctx: Ctx) -> Response:
    """WADO-RS: every instance of the study, byte for byte as stored (multipart/related;
    type="application/dicom"; ``transfer-syntax=1.2.840.10008.1.2.1`` asks for decoding)."""
    return _retrieve(request, located(ctx, actor, "retrieve", study))


@router.get("/studies/{study}/series/{series}", response_class=Response, responses=MULTI_DOC)
def retrieve_series(
    request: Request, study: Study, series: Series, actor: Reader, ctx: Ctx
) -> Response:
    """WADO-RS: every instance of the series, as stored."""
    return _retrieve(request, located(ctx, actor, "retrieve", study, series))


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}", response_class=Response, responses=MULTI_DOC
)
def retrieve_instance(
    request: Request, study: Study, series: Series, sop: Sop, actor: Reader, ctx: Ctx
) -> Response:
    """WADO-RS: one instance, as stored."""
    return _retrieve(request, located(ctx, actor, "retrieve", study, series, sop))


def _metadata(request: Request, found: list[Located]) -> JSONResponse:
    return json_response(service.metadata(found, base_url(request)))


@router.get("/studies/{study}/metadata", responses=JSON_DOC)
def study_metadata(request: Request, study: Study, actor: Reader, ctx: Ctx) -> Response:
    """WADO-RS metadata of every instance of the study (BulkDataURIs for pixel data)."""
    return metadata_response(request, ctx, actor, study)


@router.get("/studies/{study}/series/{series}/metadata", responses=JSON_DOC)
def series_metadata(
    request: Request, study: Study, series: Series, actor: Reader, ctx: Ctx
) -> Response:
    """WADO-RS metadata of every instance of the series."""
    return metadata_response(request, ctx, actor, study, series)


@router.get("/studies/{study}/series/{series}/instances/{sop}/metadata", responses=JSON_DOC)
def instance_metadata(
    request: Request, study: Study, series: Series, sop: Sop, actor: Reader, ctx: Ctx
) -> JSONResponse:
    """WADO-RS metadata of one instance."""
    return _metadata(request, located(ctx, actor, "metadata", study, series, sop))


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frame_list}",
    response_class=Response,
    responses=MULTI_DOC,
)
def retrieve_frames(
    request: Request,
    study: Study,
    series: Series,
    sop: Sop,
    frame_list: FrameList,
    actor: Reader,
    ctx: Ctx,
) -> Response:
    """WADO-RS frames (1-based list). ``type="application/octet-stream"`` without a transfer
    syntax (or with 1.2.840.10008.1.2.1) answers Explicit VR Little Endian, decoding compressed
    frames; ``transfer-syntax=*`` or the stored syntax answers them as stored."""
    loc = located(ctx, actor, "frames", study, series, sop)[0]
    numbers = service.parse_frame_list(frame_list)
    parts = service.frame_parts(loc, numbers, request.headers.get("accept"), base_url(request))
    return multipart_response(parts, parts[0].content_type.split(";")[0])


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/bulk/{tag}",
    response_class=Response,
    responses=MULTI_DOC,
)
def retrieve_bulk(
    study: Study,
    series: Series,
    sop: Sop,
    tag: Annotated[str, Path(pattern=r"^[0-9A-Fa-f]{8}$")],
    actor: Reader,
    ctx: Ctx,
) -> Response:
    """WADO-RS bulk data named by a BulkDataURI of the metadata."""
    loc = located(ctx, actor, "bulk", study, series, sop)[0]
    parts = service.bulk_parts(loc, int(tag, 16))
    return multipart_response(parts, parts[0].content_type.split(";")[0])


async def _body(request: Request, limit: int) -> bytes:
    too_large = f"the request is over {limit // 1_000_000} MB (RADIANT_UPLOAD_MAX_MB)"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(too_large)
    return bytes(body)


_STOW = {
    "requestBody": {
        "required": True,
        "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_STORED: Doc = {
    200: {"content": {DICOM_JSON: {}}, "description": "Every instance stored"},
    202: {"content": {DICOM_JSON: {}}, "description": "Some failed (FailedSOPSequence)"},
    409: {"content": {DICOM_JSON: {}}, "description": "None stored (FailedSOPSequence)"},
    413: {"description": "Over RADIANT_UPLOAD_MAX_MB"},
    415: {"description": "Not multipart/related; type=application/dicom"},
}


async def _stow(request: Request, ctx: AppContext, actor: Actor, study: str | None) -> Response:
    body = await _body(request, ctx.settings.upload_max_mb * 1_000_000)
    report, answer = await run_in_threadpool(
        stow.store,
        ctx.ingestor,
        body,
        request.headers.get("content-type"),
        study=study,
        actor=actor,
        base=base_url(request),
        min_free_gb=ctx.settings.min_free_gb,
    )
    warning = stow.warning_header(report)
    headers = {"Warning": warning} if warning else {}
    return JSONResponse(
        answer, status_code=report.status_code, media_type=DICOM_JSON, headers=headers
    )


@router.post("/studies", response_class=Response, responses=_STORED, openapi_extra=_STOW)
async def store_instances(request: Request, actor: Storer, ctx: Ctx) -> Response:
    """STOW-RS: store the application/dicom parts through the same ingest as C-STORE."""
    return await _stow(request, ctx, actor, None)


@router.post("/studies/{study}", response_class=Response, responses=_STORED, openapi_extra=_STOW)
async def store_study_instances(
    request: Request, study: Study, actor: Storer, ctx: Ctx
) -> Response:
    """STOW-RS into one study: instances of another study fail with reason 0xA900."""
    return await _stow(request, ctx, actor, study)


# last, so the rendered routes keep their place after the retrieve routes in the API document
router.include_router(rendered.router)
