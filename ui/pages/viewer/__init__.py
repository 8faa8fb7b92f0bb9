"""Viewer: series thumbnails, the current image as large as the screen allows (the page itself
never scrolls), slices by swipe, slider, mouse wheel, arrow keys, Page Up/Down and Home/End,
window presets, drag to window/level, pinch or buttons to zoom and a drag to pan when zoomed,
orientation letters on the image's edges, demographics and technique overlay inside the image,
AI findings beside the image (tap one: its slice, its box).

Images are rendered on the server by the studies and volumes services (the series opened is
audited once) and sent to this session only, as data URLs. Presets and drag window/level both
re-render from the stored values on the server: a drag sends the window centre/width, throttled,
to the server, which renders the latest one with the LINEAR VOI function (PS3.3 C.11.2.1.2.1);
the overlay then names the window of the image shown (a preset with its numbers, or "dragged").
Zoom, pinch and pan move the image in the browser.

Components: :mod:`.panels` (header, thumbnails, findings), :mod:`.viewport`, :mod:`.toolbar`,
:mod:`.overlay`, :mod:`.gestures` (browser side), :mod:`.controller` (behaviour and events),
:mod:`.state` and :mod:`.data` (reads); the orientation letters come from
:mod:`appliance.dicom.orientation`."""

from __future__ import annotations

import json
from functools import partial

from nicegui import ui

from ui import components, i18n, runtime, session
from ui.pages.viewer import data, panels
from ui.pages.viewer.controller import WINDOW_EVENT_THROTTLE_S, Viewer
from ui.pages.viewer.gestures import GESTURES_JS
from ui.pages.viewer.state import (
    PRESETS,
    Slice,
    ViewState,
    box_svg,
    data_url,
    dragged_window,
    slice_of,
    window_numbers,
)
from ui.pages.viewer.toolbar import toolbar
from ui.pages.viewer.viewport import viewport

__all__ = [
    "GESTURES_JS",
    "PRESETS",
    "WINDOW_EVENT_THROTTLE_S",
    "Slice",
    "ViewState",
    "box_svg",
    "build",
    "data_url",
    "dragged_window",
    "register",
    "slice_of",
    "window_numbers",
]


def register() -> None:
    @ui.page("/viewer/{study_id}")
    def viewer_page(study_id: str) -> components.Guarded:
        user = components.guard_page(session.EVERYONE)
        if not isinstance(user, session.SessionUser):
            return user
        build(user, study_id)
        return None


def build(user: session.SessionUser, study_id: str) -> None:
    ui.add_body_html(GESTURES_JS)
    ui.query("body").classes("radiant-fill")  # this screen is exactly the window's height
    with components.frame(user, ""):
        frame_column = ui.context.slot.parent
        frame_column.classes("radiant-fill-main")
        holder = ui.column().classes("w-full gap-2 radiant-fill-main")
        with holder:
            ui.label(i18n.t("common.loading")).classes("text-h6 radiant-muted")

    async def load() -> None:
        loaded = await components.load_or_not_found(
            holder, lambda: data.load_study(study_id, user)
        )
        if loaded is not None:
            with holder:
                await _layout(user, ViewState(*loaded))

    ui.timer(0.01, load, once=True)


async def _layout(user: session.SessionUser, view: ViewState) -> None:
    study = view.study
    viewer = Viewer(user, view)
    panels.header(user, study)
    with ui.row().classes("w-full gap-3 items-stretch radiant-fill-main"):
        thumbs = ui.column().classes("gap-2 no-wrap").style(
            "width: 148px; min-width: 148px; max-height: 100%; overflow-y: auto")
        with ui.column().classes("col gap-2 no-wrap").style("min-width: 0; min-height: 0"):
            viewer.screen = viewport()
            viewer.controls = toolbar(viewer.step, viewer.set_preset, viewer.reset_view)
        findings_box = ui.column().classes("gap-2 no-wrap").style(
            "width: 280px; min-width: 280px; max-height: 100%; overflow-y: auto")
    viewer.listen()
    with thumbs:
        viewer.thumbs = panels.thumbnails(study, viewer.open_series)
    with findings_box:
        panels.findings(view.analysis, viewer.show_finding)

    viewer.follow_timer = ui.timer(3.0, viewer.follow)
    element_id = viewer.screen.element.id
    texts = json.dumps({"pan": i18n.t("viewer.zoom_pan", percent="{percent}")})
    ui.timer(0.3, lambda: ui.run_javascript(f"radiantViewerAttach({element_id}, {texts})"),
             once=True)

    first = view.analysis.series_id if view.analysis and view.analysis.series_id else None
    image_series = [s for s in study.series if s.instance_count]
    chosen = first or (max(image_series, key=lambda s: s.instance_count).id
                       if image_series else None)
    if chosen:
        await viewer.open_series(chosen)
    else:
        viewer.overlay()
    for series in study.series:
        png = await runtime.off_loop(partial(data.thumbnail, series.id, user))
        if png:
            viewer.thumbs.images[series.id].set_source(data_url(png))
