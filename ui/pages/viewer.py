"""Viewer: series thumbnails, the current image large, slices by swipe, slider, mouse wheel
and arrow keys, window presets, drag to window/level, pinch or buttons to zoom, demographics and
technique overlay, AI findings beside the image (tap one: its slice, its box).

Images are rendered on the server by the studies and volumes services (each read audited) and
sent to this session only, as data URLs. Presets and drag window/level both re-render from the
stored values on the server: a drag changes the window centre/width in the browser (shown at
once in the overlay) and sends it, throttled, to the server, which renders the latest one with
the LINEAR VOI function (PS3.3 C.11.2.1.2.1). Zoom and pinch scale the image in the browser."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from nicegui import events, ui

from appliance.analysis import completeness
from appliance.analysis import service as analysis_service
from appliance.analysis.models import AnalysisOut, FindingOut
from appliance.dicom import preview
from appliance.studies import service as studies
from appliance.studies.models import InstanceOut, PreviewImage, StudyDetail
from appliance.volumes import service as volumes
from ui import components, format, i18n, runtime, session

PRESETS = ("auto", "soft", "lung", "bone", "brain", "liver")
WINDOW_EVENT_THROTTLE_S = 0.15  # at most ~7 window renders per second while dragging

GESTURES_JS = """
<script>
window.radiantViewerAttach = function (id) {
  const el = document.getElementById('c' + id);
  if (!el || el.dataset.attached) return;
  el.dataset.attached = '1';
  const stage = el.querySelector('.radiant-stage');
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const state = {mode: 'scroll', zoom: 1, center: null, width: null, template: '',
                 pointers: new Map(), acc: 0, pinch: null};
  state.apply = () => {
    stage.style.transform = 'scale(' + state.zoom + ')';
    const zoom = el.querySelector('.radiant-zoom');
    if (zoom) zoom.textContent = Math.round(state.zoom * 100) + '%';
  };
  const shown = (v) => String(Math.round(v * 10) / 10);
  state.setWindow = (center, width, template) => {
    state.center = center; state.width = width; state.template = template;
  };
  state.dragWindow = (dx, dy) => {
    if (state.center === null || state.width === null) return;
    const k = Math.max(0.5, state.width / 256);
    state.width = clamp(state.width + dx * k, 1, 2000000);
    state.center = clamp(state.center + dy * k, -1000000, 1000000);
    const label = el.querySelector('.radiant-wl');
    if (label && state.template) label.textContent = state.template
      .replace('{center}', shown(state.center)).replace('{width}', shown(state.width));
    emitEvent('radiant_window', {center: state.center, width: state.width});
  };
  state.zoomBy = (factor) => { state.zoom = clamp(state.zoom * factor, 0.5, 8); state.apply(); };
  state.reset = () => { state.zoom = 1; state.apply(); };
  window.radiantViewer = state;
  el.addEventListener('wheel', (e) => {
    e.preventDefault();
    emitEvent('radiant_slice', e.deltaY > 0 ? 1 : -1);
  }, {passive: false});
  el.addEventListener('pointerdown', (e) => {
    el.setPointerCapture(e.pointerId);
    state.pointers.set(e.pointerId, {x: e.clientX, y: e.clientY});
    state.acc = 0;
    if (state.pointers.size === 2) {
      const [a, b] = [...state.pointers.values()];
      state.pinch = {d: Math.max(1, Math.hypot(a.x - b.x, a.y - b.y)), z: state.zoom};
    }
  });
  el.addEventListener('pointermove', (e) => {
    const prev = state.pointers.get(e.pointerId);
    if (!prev) return;
    const cur = {x: e.clientX, y: e.clientY};
    state.pointers.set(e.pointerId, cur);
    if (state.pointers.size >= 2 && state.pinch) {
      const [a, b] = [...state.pointers.values()];
      const d = Math.hypot(a.x - b.x, a.y - b.y);
      state.zoom = clamp(state.pinch.z * d / state.pinch.d, 0.5, 8);
      state.apply();
      return;
    }
    const dx = cur.x - prev.x, dy = cur.y - prev.y;
    if (state.mode === 'window') {
      state.dragWindow(dx, dy);
      return;
    }
    state.acc += dy;
    while (Math.abs(state.acc) >= 16) {
      const step = state.acc > 0 ? 1 : -1;
      state.acc -= step * 16;
      emitEvent('radiant_slice', step);
    }
  });
  const up = (e) => {
    state.pointers.delete(e.pointerId);
    if (state.pointers.size < 2) state.pinch = null;
  };
  el.addEventListener('pointerup', up);
  el.addEventListener('pointercancel', up);
  state.apply();
};
</script>
"""


def register() -> None:
    @ui.page("/viewer/{study_id}")
    def viewer_page(study_id: str) -> components.Guarded:
        user = components.guard_page(session.EVERYONE)
        if not isinstance(user, session.SessionUser):
            return user
        build(user, study_id)
        return None


@dataclass(frozen=True)
class Slice:
    instance: InstanceOut
    frame: int


@dataclass
class ViewState:
    study: StudyDetail
    analysis: AnalysisOut | None
    series_id: str | None = None
    slices: list[Slice] = field(default_factory=list)
    index: int = 0
    preset: str = "auto"
    window: tuple[float, float] | None = None  # (center, width) dragged; overrides the preset
    shown_window: tuple[float, float] | None = None  # what the last image was rendered with
    rendering: bool = False
    box: dict[str, Any] | None = None
    box_slice: int | None = None


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _load_study(study_id: str, user: session.SessionUser) -> tuple[StudyDetail, AnalysisOut | None]:
    db = runtime.get().db()
    study = studies.get_study(db, study_id, user.actor)
    found = analysis_service.study_analyses(db, study_id, user.actor)
    done = [a for a in found if a.status in ("completed", "needs_review")]
    return study, (done[0] if done else None)


def _arrival(study_id: str) -> completeness.Arrival:
    rt = runtime.get()
    return completeness.arrival(rt.db(), study_id, rt.settings.stable_age_s)


def _load_slices(series_id: str, user: session.SessionUser) -> list[Slice]:
    # One audit row per series opened (series.view); its slices render unaudited.
    instances = studies.view_series(runtime.get().db(), series_id, user.actor)
    return [Slice(inst, frame) for inst in instances for frame in range(max(1, inst.frames))]


def _reload_slices(series_id: str) -> list[Slice]:
    # The open series grew (a study still arriving): already audited when it was opened.
    instances = studies.reread_viewed_series(runtime.get().db(), series_id)
    return [Slice(inst, frame) for inst in instances for frame in range(max(1, inst.frames))]


def _render(
    item: Slice, preset: str, window: tuple[float, float] | None, user: session.SessionUser
) -> PreviewImage:
    rt = runtime.get()
    center, width = window if window is not None else (None, None)
    return studies.instance_preview(
        rt.db(), rt.ctx.store, item.instance.id, user.actor, frame=item.frame, preset=preset,
        center=center, width=width, audited=False,
    )


def window_numbers(value: float) -> str:
    """A window value for the overlay (at most one decimal)."""
    return f"{round(value, 1):g}"


def dragged_window(args: Any) -> tuple[float, float] | None:
    """The (center, width) a drag sent, or None when it is not a usable window."""
    if not isinstance(args, dict):
        return None
    try:
        center, width = float(args["center"]), float(args["width"])
        checked = preview.explicit_window(center, width)
    except (KeyError, TypeError, ValueError):
        return None
    return (checked.center, checked.width) if checked is not None else None


def _thumbnail(series_id: str, user: session.SessionUser) -> bytes | None:
    try:
        return volumes.series_thumbnail(runtime.get().ctx, series_id, user.actor)
    except Exception:
        return None


def slice_of(finding: FindingOut, slices: list[Slice]) -> int | None:
    """Where a finding sits in this series' slices: its instance, else its slice index."""
    if finding.instance_id is not None:
        for position, item in enumerate(slices):
            if item.instance.id == finding.instance_id:
                return position
    if finding.slice_index is not None and 0 <= finding.slice_index < len(slices):
        return finding.slice_index
    return None


def box_svg(box: dict[str, Any] | None) -> str:
    """The finding's box (pixels on the stored image) as an SVG rectangle."""
    pixels = (box or {}).get("pixels")
    if not pixels or pixels.get("empty"):
        return ""
    x, y = float(pixels["col0"]), float(pixels["row0"])
    width, height = float(pixels["col1"]) - x, float(pixels["row1"]) - y
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="none" '
        'stroke="#ffeb3b" stroke-width="2" vector-effect="non-scaling-stroke" />'
    )


def build(user: session.SessionUser, study_id: str) -> None:
    ui.add_body_html(GESTURES_JS)
    with components.frame(user, ""):
        holder = ui.column().classes("w-full gap-2")
        with holder:
            ui.label(i18n.t("common.loading")).classes("text-h6 radiant-muted")

    async def load() -> None:
        loaded = await components.load_or_not_found(holder, lambda: _load_study(study_id, user))
        if loaded is not None:
            with holder:
                await _layout(user, ViewState(*loaded))

    ui.timer(0.01, load, once=True)


async def _layout(user: session.SessionUser, view: ViewState) -> None:
    study = view.study
    patient = study.patient
    with ui.row().classes("w-full items-center gap-2 no-wrap"):
        ui.label(format.patient_name(patient)).classes("text-h5 text-weight-bold")
        ui.label(study.description or "").classes("text-h6 radiant-muted ellipsis")
        ui.space()
        if user.may(session.CLINICAL):
            ui.button(i18n.t("action.analyse"), icon="psychology",
                      on_click=lambda: ui.navigate.to(f"/analysis/{study.id}")).props(
                "no-caps outline size=lg data-testid=viewer-analyse")
        ui.button(i18n.t("action.report"), icon="description",
                  on_click=lambda: ui.navigate.to(f"/report/{study.id}")).props(
            "no-caps outline size=lg data-testid=viewer-report")
    with ui.row().classes("w-full no-wrap gap-3 items-start"):
        thumbs = ui.column().classes("gap-2").style("width: 148px; min-width: 148px;"
                                                    " max-height: 600px; overflow-y: auto")
        with ui.column().classes("col gap-2").style("min-width: 0"):
            viewport = ui.element("div").classes("radiant-viewport w-full").style(
                "height: 420px").mark("viewport")
            with viewport:
                with ui.element("div").classes("radiant-stage w-full h-full flex flex-center"):
                    image = ui.interactive_image(events=[]).style(
                        "height: 100%; max-width: 100%; object-fit: contain").props(
                        "data-testid=viewer-image")
                top_left = ui.label().classes("radiant-overlay").style(
                    "top: 6px; left: 8px; white-space: pre-line").mark("overlay-demographics")
                top_right = ui.label().classes("radiant-overlay text-right").style(
                    "top: 6px; right: 8px; white-space: pre-line").mark("overlay-technique")
                bottom_left = ui.label().classes("radiant-overlay").style(
                    "bottom: 6px; left: 8px").props("data-testid=slice-label").mark("slice-label")
                with ui.element("div").classes("radiant-overlay text-right").style(
                    "bottom: 6px; right: 8px"
                ):
                    preset_label = ui.label().mark("overlay-preset")
                    window_label = ui.label().classes("radiant-wl").props(
                        "data-testid=overlay-window").mark("overlay-window")
                    ui.label("100%").classes("radiant-zoom")
            with ui.row().classes("w-full items-center no-wrap gap-2"):
                ui.button(icon="keyboard_arrow_up", on_click=lambda: step(-1)).props(
                    "round size=lg data-testid=slice-prev").tooltip(i18n.t("viewer.previous"))
                slider = ui.slider(min=1, max=1, value=1).classes("col").props(
                    "label data-testid=slice-slider")
                ui.button(icon="keyboard_arrow_down", on_click=lambda: step(1)).props(
                    "round size=lg data-testid=slice-next").tooltip(i18n.t("viewer.next")).mark(
                    "slice-next")
            with ui.row().classes("w-full items-center gap-2"):
                preset_buttons: dict[str, ui.button] = {}
                for name in PRESETS:
                    preset_buttons[name] = ui.button(
                        i18n.t(f"preset.{name}"), on_click=lambda n=name: set_preset(n)
                    ).props(f"no-caps outline data-testid=preset-{name}")
                ui.space()
                ui.button(icon="zoom_in", on_click=lambda: ui.run_javascript(
                    "window.radiantViewer && radiantViewer.zoomBy(1.25)")).props(
                    "round data-testid=zoom-in").tooltip(i18n.t("viewer.zoom_in"))
                ui.button(icon="zoom_out", on_click=lambda: ui.run_javascript(
                    "window.radiantViewer && radiantViewer.zoomBy(0.8)")).props(
                    "round data-testid=zoom-out").tooltip(i18n.t("viewer.zoom_out"))
                ui.button(icon="restart_alt", on_click=lambda: reset_view()).props(
                    "round data-testid=view-reset").tooltip(i18n.t("viewer.reset"))
                drag = ui.toggle(
                    {"scroll": i18n.t("viewer.drag_scroll"),
                     "window": i18n.t("viewer.drag_window")},
                    value="scroll",
                ).props("no-caps data-testid=drag-mode")
        findings_box = ui.column().classes("gap-2").style("width: 300px; min-width: 300px")

    def overlay() -> None:
        if not view.slices:
            bottom_left.set_text(i18n.t("viewer.no_images"))
            return
        current = view.slices[view.index]
        series = next((s for s in study.series if s.id == view.series_id), None)
        age = format.age_years(patient.birth_date, format.dicom_date(study.study_date))
        top_left.set_text(
            "\n".join([
                format.patient_name(patient),
                i18n.t("overlay.mrn", mrn=patient.patient_id),
                i18n.t("overlay.demographics", sex=patient.sex or "-",
                       age="-" if age is None else age,
                       birth=patient.birth_date.isoformat() if patient.birth_date else "-"),
            ])
        )
        thickness = current.instance.slice_thickness
        top_right.set_text(
            "\n".join([
                format.study_day(study.study_date),
                (series.modality or "") + " " + (series.description or "") if series else "",
                i18n.t("overlay.technique",
                       rows=current.instance.rows or "-", columns=current.instance.columns or "-",
                       thickness="-" if thickness is None else f"{thickness:g}"),
            ])
        )
        bottom_left.set_text(i18n.t("viewer.slice", number=view.index + 1,
                                    total=len(view.slices)))
        chosen = i18n.t("overlay.custom") if view.window else i18n.t(f"preset.{view.preset}")
        preset_label.set_text(i18n.t("overlay.preset", preset=chosen))
        shown = view.window or view.shown_window
        window_label.set_text(
            i18n.t("overlay.window", center=window_numbers(shown[0]),
                   width=window_numbers(shown[1])) if shown else ""
        )
        for name, button in preset_buttons.items():
            button.props(remove="unelevated outline")
            active = name == view.preset and view.window is None
            button.props("unelevated color=primary" if active else "outline")

    async def render() -> None:
        if view.rendering or not view.slices:
            return
        view.rendering = True
        try:
            while True:
                wanted, preset, window = view.index, view.preset, view.window
                item = view.slices[wanted]
                try:
                    found = await runtime.off_loop(partial(_render, item, preset, window, user))
                except Exception as exc:
                    components.notify_error(exc)
                    break
                if session.require(session.EVERYONE) is None:
                    components.refuse()
                    break
                image.set_source(data_url(found.png))
                if found.window_center is not None and found.window_width is not None:
                    view.shown_window = (found.window_center, found.window_width)
                else:
                    view.shown_window = None
                if window is None:
                    sync_window()
                rows = item.instance.rows or 1
                columns = item.instance.columns or 1
                image.style(f"aspect-ratio: {columns} / {rows}")
                image.set_content(box_svg(view.box) if view.box_slice == wanted else "")
                if (wanted, preset, window) == (view.index, view.preset, view.window):
                    break
        finally:
            view.rendering = False
        overlay()

    async def go(index: int) -> None:
        if not view.slices:
            return
        view.index = max(0, min(len(view.slices) - 1, index))
        if int(slider.value) != view.index + 1:
            slider.set_value(view.index + 1)
        overlay()
        await render()

    async def step(delta: int) -> None:
        await go(view.index + delta)

    async def set_preset(name: str) -> None:
        view.preset = name
        view.window = None
        overlay()
        await render()

    def sync_window() -> None:
        """Give the browser the window just shown, the start of the next drag."""
        shown = view.shown_window
        center, width = shown if shown else (None, None)
        template = i18n.t("overlay.window", center="{center}", width="{width}")
        ui.run_javascript(
            "window.radiantViewer && radiantViewer.setWindow("
            f"{json.dumps(center)}, {json.dumps(width)}, {json.dumps(template)})"
        )

    async def on_window(event: events.GenericEventArguments) -> None:
        wanted = dragged_window(event.args)
        if wanted is None or not view.slices:
            return
        view.window = wanted
        overlay()
        await render()

    ui.on("radiant_window", on_window, throttle=WINDOW_EVENT_THROTTLE_S)

    async def reset_view() -> None:
        ui.run_javascript("window.radiantViewer && radiantViewer.reset()")
        if view.window is not None:
            await set_preset(view.preset)

    async def open_series(series_id: str, index: int | None = None) -> None:
        try:
            view.slices = await runtime.off_loop(lambda: _load_slices(series_id, user))
        except Exception as exc:
            components.notify_error(exc)
            return
        view.series_id = series_id
        view.box, view.box_slice = None, None
        slider._props["max"] = max(1, len(view.slices))
        slider.update()
        view.index = len(view.slices) // 2 if index is None else index
        for sid, card in thumb_cards.items():
            card.classes(replace="radiant-card" + (" bg-blue-10" if sid == series_id else ""))
        await go(view.index)

    async def on_slider(event: events.ValueChangeEventArguments[Any]) -> None:
        target = int(event.value) - 1
        if target != view.index:
            await go(target)

    slider.on_value_change(on_slider)

    async def on_key(event: events.KeyEventArguments) -> None:
        if not event.action.keydown:
            return
        if event.key.arrow_up or event.key.arrow_left or event.key.page_up:
            await step(-1)
        elif event.key.arrow_down or event.key.arrow_right or event.key.page_down:
            await step(1)

    ui.keyboard(on_key=on_key)

    async def on_swipe(event: events.GenericEventArguments) -> None:
        delta = int(event.args) if isinstance(event.args, int | float) else 0
        if delta:
            await step(1 if delta > 0 else -1)

    ui.on("radiant_slice", on_swipe)

    def on_drag(event: events.ValueChangeEventArguments[Any]) -> None:
        ui.run_javascript(f"window.radiantViewer && (radiantViewer.mode = '{event.value}')")

    drag.on_value_change(on_drag)

    # series thumbnails
    thumb_cards: dict[str, ui.element] = {}
    thumb_images: dict[str, ui.image] = {}
    with thumbs:
        for series in study.series:
            card = ui.card().classes("radiant-card q-pa-xs cursor-pointer").props(
                f"data-testid=series-thumb data-series={series.id}").mark("series-thumb")
            card.on("click", lambda s=series.id: open_series(s))
            with card:
                thumb_images[series.id] = ui.image("").classes("w-full").style(
                    "height: 96px; background: #000")
                ui.label(
                    i18n.t("viewer.series_label", number=series.series_number or "-",
                           modality=series.modality or "", count=series.instance_count)
                ).classes("text-caption")
            thumb_cards[series.id] = card

    # findings beside the image
    with findings_box:
        if view.analysis is None:
            ui.label(i18n.t("viewer.no_findings")).classes("radiant-muted")
        else:
            result = view.analysis
            components.ai_banner()
            with ui.row().classes("items-center gap-1"):
                components.chip(result.verification_flag, "red-9", "gpp_maybe")
                ui.label(i18n.t("viewer.findings")).classes("text-h6")
            if result.overall_impression:
                ui.label(result.overall_impression).classes("text-body2")
            for finding in result.findings:
                item = ui.card().classes("radiant-card q-pa-sm w-full cursor-pointer").props(
                    "data-testid=finding").mark("finding")
                item.on("click", lambda f=finding: show_finding(f))
                with item:
                    ui.label(finding.description).classes("text-body1")
                    if finding.location:
                        ui.label(finding.location).classes("text-caption radiant-muted")
                    ui.label(
                        i18n.t("finding.confidence", percent=round(finding.confidence * 100))
                    ).classes("text-caption text-weight-bold").props(
                        "data-testid=finding-confidence")
            if result.disclaimer:
                ui.label(result.disclaimer).classes("text-caption radiant-muted").props(
                    "data-testid=disclaimer")

    async def show_finding(finding: FindingOut) -> None:
        if finding.series_id and finding.series_id != view.series_id:
            await open_series(finding.series_id)
        position = slice_of(finding, view.slices)
        if position is None:
            ui.notify(i18n.t("viewer.finding_no_slice"), type="warning")
            return
        view.box, view.box_slice = finding.box, position
        await go(position)
        image.set_content(box_svg(view.box))

    async def follow() -> None:
        """A study still arriving: the open series grows on screen (its slice count and the
        slider), keeping the image shown; stops once the study is complete."""
        found = await runtime.off_loop(lambda: _arrival(study.id))
        if found.instances != arrived["instances"] and view.series_id is not None:
            arrived["instances"] = found.instances
            sid = view.series_id
            try:
                fresh = await runtime.off_loop(lambda: _reload_slices(sid))
            except Exception:
                return
            if sid == view.series_id and len(fresh) != len(view.slices):
                shown = view.slices[view.index] if view.slices else None
                view.slices = fresh
                slider._props["max"] = max(1, len(fresh))
                slider.update()
                if shown is not None:
                    view.index = next(
                        (n for n, item in enumerate(fresh)
                         if item.instance.id == shown.instance.id and item.frame == shown.frame),
                        min(view.index, len(fresh) - 1))
                    slider.set_value(view.index + 1)
                overlay()
        if found.complete:
            follow_timer.deactivate()

    arrived = {"instances": -1}
    follow_timer = ui.timer(3.0, follow)
    ui.timer(0.3, lambda: ui.run_javascript(f"radiantViewerAttach({viewport.id})"), once=True)

    first = view.analysis.series_id if view.analysis and view.analysis.series_id else None
    image_series = [s for s in study.series if s.instance_count]
    chosen = first or (max(image_series, key=lambda s: s.instance_count).id
                       if image_series else None)
    if chosen:
        await open_series(chosen)
    else:
        overlay()
    for series in study.series:
        png = await runtime.off_loop(partial(_thumbnail, series.id, user))
        if png:
            thumb_images[series.id].set_source(data_url(png))
