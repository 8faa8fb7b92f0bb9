"""The controls under the viewport: previous/next, the slice slider and the drag mode (scroll
slices or window/level) in one row; the window presets, zoom and reset in the next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nicegui import ui

from ui import i18n
from ui.pages.viewer.state import PRESETS


@dataclass(frozen=True)
class Toolbar:
    """The controls whose state the viewer reads or updates."""

    slider: ui.slider
    preset_buttons: dict[str, ui.button]
    drag: ui.toggle


def toolbar(
    step: Callable[[int], Awaitable[None]],
    set_preset: Callable[[str], Awaitable[None]],
    reset_view: Callable[[], Awaitable[None]],
) -> Toolbar:
    """Build the slice row and the preset/zoom row in the current container."""
    with ui.row().classes("w-full items-center no-wrap gap-2 radiant-tools"):
        ui.button(icon="keyboard_arrow_up", on_click=lambda: step(-1)).props(
            "round size=lg data-testid=slice-prev").tooltip(i18n.t("viewer.previous"))
        slider = ui.slider(min=1, max=1, value=1).classes("col").props(
            "label data-testid=slice-slider")
        ui.button(icon="keyboard_arrow_down", on_click=lambda: step(1)).props(
            "round size=lg data-testid=slice-next").tooltip(i18n.t("viewer.next")).mark(
            "slice-next")
        drag = ui.toggle(
            {"scroll": i18n.t("viewer.drag_scroll"),
             "window": i18n.t("viewer.drag_window")},
            value="scroll",
        ).props("no-caps data-testid=drag-mode")
        drag.tooltip(i18n.t("viewer.drag_hint"))
    with ui.row().classes("w-full items-center gap-2 radiant-tools"):
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
    return Toolbar(slider, preset_buttons, drag)
