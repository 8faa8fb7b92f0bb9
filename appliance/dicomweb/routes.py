"""DICOMweb endpoints under ``/dicom-web`` (QIDO-RS, WADO-RS, STOW-RS) and WADO-URI at
``/wado`` (PS3.18). Reads take a bearer token or the screen's session cookie and the roles of
the studies API (everyone signed in); storing takes a bearer token and the uploading roles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from appliance.audit.models import Actor
from appliance.auth.access import AllowWithSession
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import get_context
from appliance.dicom import preview
from appliance.dicom import query as q
from appliance.dicomweb import multipart, service, stow
from appliance.dicomweb.models import (
    DICOM,
    DICOM_JSON,
    Located,
    Part,
)
from appliance.errors import BadRequest, NotAcceptable, PayloadTooLarge

router = APIRouter(prefix="/dicom-web", tags=["dicomweb"])
uri_router = APIRouter(tags=["dicomweb"])
Ctx = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[
    Actor, Depends(AllowWithSession(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER))
]
Storer = Annotated[Actor, Depends(AllowWithSession(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN))]
UID = r"^[0-9]+(\.[0-9]+)*$"
Study = Annotated[str, Path(pattern=UID, max_length=64)]
Series = Annotated[str, Path(pattern=UID, max_length=64)]
Sop = Annotated[str, Path(pattern=UID, max_length=64)]
FrameList = Annotated[str, Path(pattern=r"^[0-9]+(,[0-9]+)*$", max_length=20_000)]
Doc = dict[int | str, dict[str, Any]]
_JSON: Doc = {200: {"content": {DICOM_JSON: {}}, "description": "DICOM JSON (PS3.18 F.2)"}}
_MULTI: Doc = {
    200: {"content": {"multipart/related": {}}, "description": "multipart/related parts"},
    406: {"description": "No acceptable media type or transfer syntax"},
}
_IMAGE: Doc = {200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "Rendered"}}
_VIEWS: dict[int, service.SeriesViews] = {}


def _views(ctx: AppContext) -> service.SeriesViews:
    views = _VIEWS.get(id(ctx))
    if views is None:
        views = _VIEWS[id(ctx)] = service.SeriesViews(ctx.settings.dicomweb_audit_window_s)
    return views


def _base(request: Request) -> str:
    """The DICOMweb root as this client reached it (BulkDataURIs and Retrieve URLs)."""
    return str(request.base_url).rstrip("/") + "/dicom-web"


def _json(items: object, ignored: list[str] | None = None) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if ignored:
        names = ", ".join(n[:64] for n in ignored[:20]).encode("ascii", "replace").decode()
        headers["Warning"] = f'299 radiant "not supported for matching, ignored: {names}"'
    return JSONResponse(items, media_type=DICOM_JSON, headers=headers)


def _multipart(parts: Iterator[Part] | list[Part], part_type: str) -> StreamingResponse:
    boundary = multipart.new_boundary()
    return StreamingResponse(
        multipart.encode(parts, boundary),
        media_type=multipart.content_type(boundary, part_type),
        headers={"Cache-Control": "no-store"},
    )


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
        _base(request),
        ctx.settings.dicom_ae_title,
    )
    return _json(found, ignored)


@router.get("/studies", responses=_JSON)
def search_studies(request: Request, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS studies: attribute matching (``PatientName=Doe*``, ``StudyDate=20200101-``,
    ``ModalitiesInStudy=CT``, UID lists...), ``fuzzymatching``, ``includefield``, ``limit``,
    ``offset``."""
    return _search(request, ctx, actor, q.Level.STUDY, {})


@router.get("/series", responses=_JSON)
def search_all_series(request: Request, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS series of every study."""
    return _search(request, ctx, actor, q.Level.SERIES, {})


@router.get("/instances", responses=_JSON)
def search_all_instances(request: Request, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS instances of every study."""
    return _search(request, ctx, actor, q.Level.IMAGE, {})


@router.get("/studies/{study}/series", responses=_JSON)
def search_series(request: Request, study: Study, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS series of one study."""
    return _search(request, ctx, actor, q.Level.SERIES, {"StudyInstanceUID": study})


@router.get("/studies/{study}/instances", responses=_JSON)
def search_study_instances(request: Request, study: Study, actor: Reader, ctx: Ctx) -> JSONResponse:
    """QIDO-RS instances of one study."""
    return _search(request, ctx, actor, q.Level.IMAGE, {"StudyInstanceUID": study})


@router.get("/studies/{study}/series/{series}/instances", responses=_JSON)
def search_series_instances(
    request: Request, study: Study, series: Series, actor: Reader, ctx: Ctx
) -> JSONResponse:
    """QIDO-RS instances of one series."""
    scope = {"StudyInstanceUID": study, "SeriesInstanceUID": series}
    return _search(request, ctx, actor, q.Level.IMAGE, scope)


def _located(
    ctx: AppContext,
    actor: Actor,
    what: str,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> list[Located]:
    db = ctx.pool.get()
    found = service.locate(db, ctx.store, study, series, sop)
    service.audit_view(db, actor, _views(ctx), found, what)
    return found


def _retrieve(request: Request, found: list[Located]) -> StreamingResponse:
    syntax = service.choose_syntax(request.headers.get("accept"))
    service.check_syntax(found, syntax)
    return _multipart(service.instance_parts(found, syntax, _base(request)), DICOM)


@router.get("/studies/{study}", response_class=Response, responses=_MULTI)
def retrieve_study(request: Request, study: Study, actor: Reader, ctx: Ctx) -> Response:
    """WADO-RS: every instance of the study, byte for byte as stored (multipart/related;
    type="application/dicom"; ``transfer-syntax=1.2.840.10008.1.2.1`` asks for decoding)."""
    return _retrieve(request, _located(ctx, actor, "retrieve", study))


@router.get("/studies/{study}/series/{series}", response_class=Response, responses=_MULTI)
def retrieve_series(
    request: Request, study: Study, series: Series, actor: Reader, ctx: Ctx
) -> Response:
    """WADO-RS: every instance of the series, as stored."""
    return _retrieve(request, _located(ctx, actor, "retrieve", study, series))


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}", response_class=Response, responses=_MULTI
)
def retrieve_instance(
    request: Request, study: Study, series: Series, sop: Sop, actor: Reader, ctx: Ctx
) -> Response:
    """WADO-RS: one instance, as stored."""
    return _retrieve(request, _located(ctx, actor, "retrieve", study, series, sop))


def _metadata(request: Request, found: list[Located]) -> JSONResponse:
    return _json(service.metadata(found, _base(request)))


@router.get("/studies/{study}/metadata", responses=_JSON)
def study_metadata(request: Request, study: Study, actor: Reader, ctx: Ctx) -> JSONResponse:
    """WADO-RS metadata of every instance of the study (BulkDataURIs for pixel data)."""
    return _metadata(request, _located(ctx, actor, "metadata", study))


@router.get("/studies/{study}/series/{series}/metadata", responses=_JSON)
def series_metadata(
    request: Request, study: Study, series: Series, actor: Reader, ctx: Ctx
) -> JSONResponse:
    """WADO-RS metadata of every instance of the series."""
    return _metadata(request, _located(ctx, actor, "metadata", study, series))


@router.get("/studies/{study}/series/{series}/instances/{sop}/metadata", responses=_JSON)
def instance_metadata(
    request: Request, study: Study, series: Series, sop: Sop, actor: Reader, ctx: Ctx
) -> JSONResponse:
    """WADO-RS metadata of one instance."""
    return _metadata(request, _located(ctx, actor, "metadata", study, series, sop))


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frame_list}",
    response_class=Response,
    responses=_MULTI,
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
    loc = _located(ctx, actor, "frames", study, series, sop)[0]
    numbers = service.parse_frame_list(frame_list)
    parts = service.frame_parts(loc, numbers, request.headers.get("accept"), _base(request))
    return _multipart(parts, parts[0].content_type.split(";")[0])


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/bulk/{tag}",
    response_class=Response,
    responses=_MULTI,
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
    loc = _located(ctx, actor, "bulk", study, series, sop)[0]
    parts = service.bulk_parts(loc, int(tag, 16))
    return _multipart(parts, parts[0].content_type.split(";")[0])


def _image_type(request: Request, accept_param: str | None) -> str:
    for media in multipart.parse_accept(accept_param or request.headers.get("accept")):
        if media.media_type in ("image/jpeg", "image/*", "*/*"):
            return "image/jpeg"
        if media.media_type == "image/png":
            return "image/png"
    raise NotAcceptable("rendered images are image/jpeg or image/png")


def _window(text: str | None) -> preview.Window | None:
    if not text:
        return None
    pieces = text.split(",")
    if len(pieces) not in (2, 3) or (len(pieces) == 3 and pieces[2].lower() != "linear"):
        raise BadRequest("window is center,width[,linear]")
    try:
        return preview.explicit_window(float(pieces[0]), float(pieces[1]))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _viewport(text: str | None, default: tuple[int, int] | None) -> tuple[int, int] | None:
    if not text:
        return default
    try:
        rows, columns = (int(v) for v in text.split(",")[:2])
    except ValueError:
        raise BadRequest("viewport is rows,columns") from None
    if not (1 <= rows <= 4096 and 1 <= columns <= 4096):
        raise BadRequest("viewport rows and columns are 1 to 4096")
    return rows, columns


Window = Annotated[str | None, Query(max_length=64, description="center,width[,linear]")]
Viewport = Annotated[str | None, Query(max_length=32, description="rows,columns")]
Quality = Annotated[int, Query(ge=1, le=100)]
AcceptParam = Annotated[str | None, Query(alias="accept", max_length=128)]


def _render(
    request: Request,
    loc: Located,
    frame: int,
    window: str | None,
    viewport: str | None,
    quality: int,
    accept: str | None,
    default_viewport: tuple[int, int] | None = None,
) -> Response:
    media = _image_type(request, accept)
    data = service.render(
        loc,
        frame,
        media,
        window=_window(window),
        viewport=_viewport(viewport, default_viewport),
        quality=quality,
    )
    return Response(data, media_type=media, headers={"Cache-Control": "no-store"})


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/rendered",
    response_class=Response,
    responses=_IMAGE,
)
def rendered_instance(
    request: Request,
    study: Study,
    series: Series,
    sop: Sop,
    actor: Reader,
    ctx: Ctx,
    window: Window = None,
    viewport: Viewport = None,
    quality: Quality = 90,
    accept: AcceptParam = None,
) -> Response:
    """WADO-RS rendered instance (its first frame), JPEG or PNG, ``window=center,width``."""
    loc = _located(ctx, actor, "rendered", study, series, sop)[0]
    return _render(request, loc, 1, window, viewport, quality, accept)


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
    response_class=Response,
    responses=_IMAGE,
)
def rendered_frame(
    request: Request,
    study: Study,
    series: Series,
    sop: Sop,
    frame: Annotated[int, Path(ge=1, le=1_000_000)],
    actor: Reader,
    ctx: Ctx,
    window: Window = None,
    viewport: Viewport = None,
    quality: Quality = 90,
    accept: AcceptParam = None,
) -> Response:
    """WADO-RS rendered frame."""
    loc = _located(ctx, actor, "rendered", study, series, sop)[0]
    return _render(request, loc, frame, window, viewport, quality, accept)


THUMBNAIL = (128, 128)


@router.get("/studies/{study}/thumbnail", response_class=Response, responses=_IMAGE)
def study_thumbnail(
    request: Request,
    study: Study,
    actor: Reader,
    ctx: Ctx,
    viewport: Viewport = None,
    accept: AcceptParam = None,
) -> Response:
    """A small picture of the study (the middle image of its first series)."""
    loc = service.middle(_located(ctx, actor, "thumbnail", study))
    return _render(request, loc, 1, None, viewport, 80, accept, THUMBNAIL)


@router.get("/studies/{study}/series/{series}/thumbnail", response_class=Response, responses=_IMAGE)
def series_thumbnail(
    request: Request,
    study: Study,
    series: Series,
    actor: Reader,
    ctx: Ctx,
    viewport: Viewport = None,
    accept: AcceptParam = None,
) -> Response:
    """A small picture of the series (its middle image)."""
    loc = service.middle(_located(ctx, actor, "thumbnail", study, series))
    return _render(request, loc, 1, None, viewport, 80, accept, THUMBNAIL)


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/thumbnail",
    response_class=Response,
    responses=_IMAGE,
)
def instance_thumbnail(
    request: Request,
    study: Study,
    series: Series,
    sop: Sop,
    actor: Reader,
    ctx: Ctx,
    viewport: Viewport = None,
    accept: AcceptParam = None,
) -> Response:
    """A small picture of the instance."""
    loc = _located(ctx, actor, "thumbnail", study, series, sop)[0]
    return _render(request, loc, 1, None, viewport, 80, accept, THUMBNAIL)


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
        base=_base(request),
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


_WADO: Doc = {
    200: {
        "content": {DICOM: {}, "image/jpeg": {}, "image/png": {}},
        "description": "The object as stored, or one frame rendered",
    }
}


@uri_router.get("/wado", response_class=Response, responses=_WADO)
def wado_uri(
    actor: Reader,
    ctx: Ctx,
    request_type: Annotated[str, Query(alias="requestType", pattern="^WADO$")],
    study_uid: Annotated[str, Query(alias="studyUID", pattern=UID, max_length=64)],
    series_uid: Annotated[str, Query(alias="seriesUID", pattern=UID, max_length=64)],
    object_uid: Annotated[str, Query(alias="objectUID", pattern=UID, max_length=64)],
    content_type: Annotated[str, Query(alias="contentType", max_length=128)] = "image/jpeg",
    frame_number: Annotated[int, Query(alias="frameNumber", ge=1, le=1_000_000)] = 1,
    window_center: Annotated[float | None, Query(alias="windowCenter")] = None,
    window_width: Annotated[float | None, Query(alias="windowWidth")] = None,
    rows: Annotated[int | None, Query(ge=1, le=4096)] = None,
    columns: Annotated[int | None, Query(ge=1, le=4096)] = None,
) -> Response:
    """WADO-URI (PS3.18 9): the object as stored (``contentType=application/dicom``) or one
    frame rendered to JPEG/PNG with ``windowCenter``/``windowWidth``."""
    loc = _located(ctx, actor, "wado-uri", study_uid, series_uid, object_uid)[0]
    wanted = [m.media_type for m in multipart.parse_accept(content_type)]
    if DICOM in wanted:
        return Response(
            loc.path.read_bytes(), media_type=DICOM, headers={"Cache-Control": "no-store"}
        )
    media = "image/png" if wanted and wanted[0] == "image/png" else "image/jpeg"
    if not any(m in ("image/jpeg", "image/png", "image/*", "*/*") for m in wanted):
        raise NotAcceptable("contentType is application/dicom, image/jpeg or image/png")
    try:
        window = preview.explicit_window(window_center, window_width)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    size = (rows or columns or 4096, columns or rows or 4096) if rows or columns else None
    data = service.render(loc, frame_number, media, window=window, viewport=size, quality=90)
    return Response(data, media_type=media, headers={"Cache-Control": "no-store"})
