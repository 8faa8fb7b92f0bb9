"""The viewport: the current image large, with the demographics, technique, slice and window
overlays in its corners (filled by :mod:`ui.pages.viewer.overlay`)."""

from __future__ import annotations

from dataclasses import dataclass

from nicegui import ui


@dataclass(frozen=True)
class Viewport:
    """The viewport element, its image and its overlay labels."""

    element: ui.element
    image: ui.interactive_image
    top_left: ui.label
    top_right: ui.label
    bottom_left: ui.label
    preset_label: ui.label
    window_label: ui.label


def viewport() -> Viewport:
    """Build the viewport in the current container."""
    element = ui.element("div").classes("radiant-viewport w-full").style(
        "height: 420px").mark("viewport")
    with element:
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
    return Viewport(element, image, top_left, top_right, bottom_left, preset_label, window_label)
