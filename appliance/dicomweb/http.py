"""What the DICOMweb routes share (PS3.18): who may call them, the UID path parameters, the
OpenAPI descriptions of their answers, the DICOM JSON and multipart/related responses, and the
located-and-audited lookup of the instances a request names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from appliance.audit.models import Actor
from appliance.auth.access import AllowWithSession
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import get_context
from appliance.dicomweb import multipart, service
from appliance.dicomweb.metadata import MetadataCache
from appliance.dicomweb.models import DICOM_JSON, Located, Part
from appliance.logs import get_logger
from appliance.studies.stability import Stable

log = get_logger("radiant.dicomweb")

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
JSON_DOC: Doc = {200: {"content": {DICOM_JSON: {}}, "description": "DICOM JSON (PS3.18 F.2)"}}
MULTI_DOC: Doc = {
    200: {"content": {"multipart/related": {}}, "description": "multipart/related parts"},
    406: {"description": "No acceptable media type or transfer syntax"},
}
IMAGE_DOC: Doc = {200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "Rendered"}}


_VIEWS: dict[int, service.SeriesViews] = {}
_METADATA: dict[int, MetadataCache] = {}


def _views(ctx: AppContext) -> service.SeriesViews:
    views = _VIEWS.get(id(ctx))
    if views is None:
        views = _VIEWS[id(ctx)] = service.SeriesViews(ctx.settings.dicomweb_audit_window_s)
    return views


def metadata_cache(ctx: AppContext) -> MetadataCache:
    """The running app's series metadata cache (RADIANT_DICOMWEB_METADATA_CACHE_MB)."""
    cache = _METADATA.get(id(ctx))
    if cache is None:
        size = ctx.settings.dicomweb_metadata_cache_mb * 1_000_000
        cache = _METADATA[id(ctx)] = MetadataCache(size)
    return cache


def base_url(request: Request) -> str:
    """The DICOMweb root as this client reached it (BulkDataURIs and Retrieve URLs)."""
    return str(request.base_url).rstrip("/") + "/dicom-web"


def json_response(items: object, ignored: list[str] | None = None) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if ignored:
        names = ", ".join(n[:64] for n in ignored[:20]).encode("ascii", "replace").decode()
        headers["Warning"] = f'299 radiant "not supported for matching, ignored: {names}"'
    return JSONResponse(items, media_type=DICOM_JSON, headers=headers)


def multipart_response(parts: Iterator[Part] | list[Part], part_type: str) -> StreamingResponse:
    boundary = multipart.new_boundary()
    return StreamingResponse(
        multipart.encode(parts, boundary),
        media_type=multipart.content_type(boundary, part_type),
        headers={"Cache-Control": "no-store"},
    )


def located(
    ctx: AppContext,
    actor: Actor,
    what: str,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> list[Located]:
    """The instances the path names (404 when none), their view audited."""
    db = ctx.pool.get()
    found = service.locate(db, ctx.store, study, series, sop)
    service.audit_view(db, actor, _views(ctx), found, what)
    return found


def metadata_response(
    request: Request, ctx: AppContext, actor: Actor, study: str, series: str | None = None
) -> Response:
    """WADO-RS metadata of a study or series (cached per series version), its view audited."""
    db = ctx.pool.get()
    body, series_uids = service.metadata_document(
        db, ctx.store, metadata_cache(ctx), study, series, base_url(request)
    )
    service.audit_view(db, actor, _views(ctx), series_uids, "metadata")
    return Response(body, media_type=DICOM_JSON, headers={"Cache-Control": "no-store"})


def warm_metadata_listener(ctx: AppContext) -> Callable[[Stable], None]:
    """A stability listener: a series that became stable has its metadata built into the
    cache, so the first viewer to open it does not wait for its headers to be read."""

    def listener(event: Stable) -> None:
        if event.kind != "series":
            return
        try:
            service.warm_metadata(ctx.pool.get(), ctx.store, metadata_cache(ctx), event.id)
        except Exception:  # a warm-up is an optimisation: the request builds it otherwise
            log.warning("metadata_warm_failed", series_id=event.id, exc_info=True)

    return listener
