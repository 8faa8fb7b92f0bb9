"""The viewer's behaviour: open a series, move between slices, render the current one with the
chosen preset or dragged window, show a finding's slice and box, follow a study still
arriving, and the keyboard, wheel/swipe and drag events that drive them."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from nicegui import events, ui

from appliance.analysis.models import FindingOut
from ui import components, i18n, runtime, session
from ui.pages.viewer import data, overlay
from ui.pages.viewer.panels import Thumbnails
from ui.pages.viewer.state import (
    Slice,
    ViewState,
    box_svg,
    data_url,
    display_aspect,
    dragged_window,
    slice_of,
)
from ui.pages.viewer.toolbar import Toolbar
from ui.pages.viewer.viewport import Viewport

WINDOW_EVENT_THROTTLE_S = 0.15  # at most ~7 window renders per second while dragging
PAGE_STEP = 10  # slices per Page Up / Page Down


class Viewer:
    """One open viewer: its state and the widgets it updates (set by the layout)."""

    screen: Viewport
    controls: Toolbar
    thumbs: Thumbnails

    def __init__(self, user: session.SessionUser, view: ViewState) -> None:
        self.user = user
        self.view = view
        self.arrived = -1
        self.follow_timer: ui.timer | None = None

    def overlay(self) -> None:
        overlay.fill(self.screen, self.controls, self.view)

    async def render(self) -> None:
        """Render until the image shown matches the latest slice, preset and window asked."""
        view = self.view
        if view.rendering or not view.slices:
            return
        view.rendering = True
        try:
            while await self._render_once():
                self.overlay()
        finally:
            view.rendering = False
        self.overlay()

    async def _render_once(self) -> bool:
        """Render the wanted slice once; True when the wish changed meanwhile (render again)."""
        view, image = self.view, self.screen.image
        wanted, preset, window = view.index, view.preset, view.window
        item = view.slices[wanted]
        try:
            found = await runtime.off_loop(partial(data.render, item, preset, window, self.user))
        except Exception as exc:
            components.notify_error(exc)
            return False
        if session.require(session.EVERYONE) is None:
            components.refuse()
            return False
        self.screen.plate.props(f"data-aspect={display_aspect(item):.6f}")
        image.set_source(data_url(found.png))
        if found.window_center is not None and found.window_width is not None:
            view.shown_window = (found.window_center, found.window_width)
        else:
            view.shown_window = None
        view.shown_source, view.shown_preset = found.source, found.preset
        view.markers, view.decoder = found.markers, found.decoder
        if window is None:
            self.sync_window()
        image.set_content(box_svg(view.box) if view.box_slice == wanted else "")
        return (wanted, preset, window) != (view.index, view.preset, view.window)

    async def go(self, index: int) -> None:
        view, slider = self.view, self.controls.slider
        if not view.slices:
            return
        view.index = max(0, min(len(view.slices) - 1, index))
        if int(slider.value) != view.index + 1:
            slider.set_value(view.index + 1)
        self.overlay()
        await self.render()

    async def step(self, delta: int) -> None:
        await self.go(self.view.index + delta)

    async def set_preset(self, name: str) -> None:
        self.view.preset = name
        self.view.window = None
        self.view.window_gen += 1  # a drag still in flight from before this is stale
        self.overlay()
        await self.render()

    def sync_window(self) -> None:
        """Give the browser the window just shown, the start of the next drag."""
        shown = self.view.shown_window
        center, width = shown if shown else (None, None)
        ui.run_javascript(
            "window.radiantViewer && radiantViewer.setWindow("
            f"{json.dumps(center)}, {json.dumps(width)}, {self.view.window_gen})"
        )

    async def reset_view(self) -> None:
        ui.run_javascript("window.radiantViewer && radiantViewer.reset()")
        if self.view.window is not None:
            await self.set_preset(self.view.preset)

    def _set_slice_count(self, count: int) -> None:
        slider = self.controls.slider
        slider._props["max"] = max(1, count)
        slider.update()

    async def open_series(self, series_id: str, index: int | None = None) -> None:
        view = self.view
        try:
            view.slices = await runtime.off_loop(lambda: data.load_slices(series_id, self.user))
        except Exception as exc:
            components.notify_error(exc)
            return
        view.series_id = series_id
        view.box, view.box_slice = None, None
        self._set_slice_count(len(view.slices))
        view.index = len(view.slices) // 2 if index is None else index
        self.thumbs.highlight(series_id)
        await self.go(view.index)

    async def show_finding(self, finding: FindingOut) -> None:
        view = self.view
        if finding.series_id and finding.series_id != view.series_id:
            await self.open_series(finding.series_id)
        position = slice_of(finding, view.slices)
        if position is None:
            ui.notify(i18n.t("viewer.finding_no_slice"), type="warning")
            return
        view.box, view.box_slice = finding.box, position
        await self.go(position)
        self.screen.image.set_content(box_svg(view.box))

    async def follow(self) -> None:
        """A study still arriving: the open series grows on screen (its slice count and the
        slider), keeping the image shown; stops once the study is complete."""
        view = self.view
        found = await runtime.off_loop(lambda: data.arrival(view.study.id))
        if found.instances != self.arrived and view.series_id is not None:
            self.arrived = found.instances
            sid = view.series_id
            try:
                fresh = await runtime.off_loop(lambda: data.reload_slices(sid))
            except Exception:
                return
            if sid == view.series_id and len(fresh) != len(view.slices):
                self._grown(fresh)
        if found.complete and self.follow_timer is not None:
            self.follow_timer.deactivate()

    def _grown(self, fresh: list[Slice]) -> None:
        """The open series now has ``fresh`` slices: keep the slice shown where it is."""
        view = self.view
        shown = view.slices[view.index] if view.slices else None
        view.slices = fresh
        self._set_slice_count(len(fresh))
        if shown is not None:
            view.index = next(
                (n for n, item in enumerate(fresh)
                 if item.instance.id == shown.instance.id and item.frame == shown.frame),
                min(view.index, len(fresh) - 1))
            self.controls.slider.set_value(view.index + 1)
        self.overlay()

    # --- events ---------------------------------------------------------------------------

    async def on_window(self, event: events.GenericEventArguments) -> None:
        wanted = dragged_window(event.args, self.view.window_gen)
        if wanted is None or not self.view.slices:
            return
        self.view.window = wanted
        self.overlay()
        await self.render()

    async def on_slider(self, event: events.ValueChangeEventArguments[Any]) -> None:
        target = int(event.value) - 1
        if target != self.view.index:
            await self.go(target)

    async def on_key(self, event: events.GenericEventArguments) -> None:
        """A navigation key (the browser already kept it from scrolling the page)."""
        name = event.args if isinstance(event.args, str) else ""
        last = len(self.view.slices) - 1
        targets = {"first": 0, "last": last}
        steps = {"previous": -1, "next": 1, "page_up": -PAGE_STEP, "page_down": PAGE_STEP}
        if name in targets:
            await self.go(targets[name])
        elif name in steps:
            await self.step(steps[name])

    async def on_swipe(self, event: events.GenericEventArguments) -> None:
        delta = int(event.args) if isinstance(event.args, int | float) else 0
        if delta:
            await self.step(1 if delta > 0 else -1)

    def on_drag(self, event: events.ValueChangeEventArguments[Any]) -> None:
        ui.run_javascript(f"window.radiantViewer && (radiantViewer.mode = '{event.value}')")

    def listen(self) -> None:
        """Wire the drag, slider, keyboard and swipe events to this viewer."""
        ui.on("radiant_window", self.on_window, throttle=WINDOW_EVENT_THROTTLE_S)
        self.controls.slider.on_value_change(self.on_slider)
        ui.on("radiant_key", self.on_key)
        ui.on("radiant_slice", self.on_swipe)
        self.controls.drag.on_value_change(self.on_drag)
