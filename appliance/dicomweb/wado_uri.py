"""WADO-URI (PS3.18 9) at ``/wado``: the object as stored or one frame rendered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from appliance.dicom import preview
from appliance.dicomweb import multipart, service
from appliance.dicomweb.http import UID, Ctx, Doc, Reader, located
from appliance.dicomweb.models import DICOM
from appliance.errors import BadRequest, NotAcceptable

uri_router = APIRouter(tags=["dicomweb"])

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
    loc = located(ctx, actor, "wado-uri", study_uid, series_uid, object_uid)[0]
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
