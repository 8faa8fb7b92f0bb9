"""DICOMweb rendered resources (PS3.18 8.3.5.1.4, 10.4): an instance or frame as JPEG or PNG
with an optional window and viewport, and small thumbnails of a study, series or instance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from appliance.dicom import preview
from appliance.dicomweb import multipart, service
from appliance.dicomweb.http import (
    IMAGE_DOC,
    Ctx,
    Reader,
    Series,
    Sop,
    Study,
    located,
)
from appliance.dicomweb.models import Located
from appliance.errors import BadRequest, NotAcceptable

router = APIRouter()  # included by appliance.dicomweb.routes (its prefix and tags)


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


@dataclass
class Rendering:
    """The query parameters of a rendered resource (PS3.18 8.3.5.1.4)."""

    window: Window = None
    viewport: Viewport = None
    quality: Quality = 90
    accept: AcceptParam = None


Rendered = Annotated[Rendering, Depends()]


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
    responses=IMAGE_DOC,
)
def rendered_instance(
    request: Request,
    study: Study,
    series: Series,
    sop: Sop,
    actor: Reader,
    ctx: Ctx,
    options: Rendered,
) -> Response:
    """WADO-RS rendered instance (its first frame), JPEG or PNG, ``window=center,width``."""
    loc = located(ctx, actor, "rendered", study, series, sop)[0]
    return _render(request, loc, 1, *_options(options))


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
    response_class=Response,
    responses=IMAGE_DOC,
)
def rendered_frame(
    request: Request,
    study: Study,
    series: Series,
    sop: Sop,
    frame: Annotated[int, Path(ge=1, le=1_000_000)],
    actor: Reader,
    ctx: Ctx,
    options: Rendered,
) -> Response:
    """WADO-RS rendered frame."""
    loc = located(ctx, actor, "rendered", study, series, sop)[0]
    return _render(request, loc, frame, *_options(options))


def _options(options: Rendering) -> tuple[str | None, str | None, int, str | None]:
    return options.window, options.viewport, options.quality, options.accept


THUMBNAIL = (128, 128)


@router.get("/studies/{study}/thumbnail", response_class=Response, responses=IMAGE_DOC)
def study_thumbnail(
    request: Request,
    study: Study,
    actor: Reader,
    ctx: Ctx,
    viewport: Viewport = None,
    accept: AcceptParam = None,
) -> Response:
    """A small picture of the study (the middle image of its first series)."""
    loc = service.middle(located(ctx, actor, "thumbnail", study))
    return _render(request, loc, 1, None, viewport, 80, accept, THUMBNAIL)


@router.get(
    "/studies/{study}/series/{series}/thumbnail", response_class=Response, responses=IMAGE_DOC
)
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
    loc = service.middle(located(ctx, actor, "thumbnail", study, series))
    return _render(request, loc, 1, None, viewport, 80, accept, THUMBNAIL)


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/thumbnail",
    response_class=Response,
    responses=IMAGE_DOC,
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
    loc = located(ctx, actor, "thumbnail", study, series, sop)[0]
    return _render(request, loc, 1, None, viewport, 80, accept, THUMBNAIL)
