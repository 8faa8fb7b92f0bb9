"""The viewport: the current image as large as the free space allows, with the demographics,
technique, slice and window overlays in its corners and the orientation letters at its edges
(filled by :mod:`ui.pages.viewer.overlay`).

The browser side (:mod:`ui.pages.viewer.gestures`) fits the image plate into the viewport at
the image's display aspect (``data-aspect``), and lays the overlay box over exactly the image
rectangle: the overlay never runs past the image; a long line wraps inside its corner (at most
half the image's width and height), what still does not fit is cut off at the image's edge."""

from __future__ import annotations

from dataclasses import dataclass

from nicegui import ui

#: CSS of the viewer screen: the page is exactly the window's height (no page scroll) and the
#: viewport takes what the header, toolbar and status bar leave.
VIEWER_CSS = """
body.radiant-fill .q-page-container { height: 100vh; }
body.radiant-fill .q-page { height: 100%; min-height: 0 !important; }
body.radiant-fill .nicegui-content { height: 100%; padding-bottom: 8px; flex-wrap: nowrap; }
.radiant-fill-main { flex: 1 1 0; min-height: 0; flex-wrap: nowrap; }
.radiant-viewport { flex: 1 1 0; min-height: 120px; }
.radiant-tools .q-btn { padding-left: 10px; padding-right: 10px; }
.radiant-plate { position: absolute; left: 0; top: 0; transform-origin: 50% 50%; }
.radiant-overlay-box { position: absolute; left: 0; top: 0; overflow: hidden;
                       pointer-events: none; font-size: 15px; }
.radiant-overlay-box .radiant-overlay { font-size: 1em; max-width: calc(50% - 30px);
  max-height: calc(50% - 16px); overflow: hidden; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.radiant-marker { position: absolute; color: #ffeb3b; font-size: 1.2em; font-weight: 700;
  line-height: 1; text-shadow: 0 0 3px #000, 0 0 3px #000; pointer-events: none; }
"""


@dataclass(frozen=True)
class Viewport:
    """The viewport element, its image and its overlay labels."""

    element: ui.element
    plate: ui.element
    image: ui.interactive_image
    top_left: ui.label
    top_right: ui.label
    bottom_left: ui.label
    preset_label: ui.label
    window_label: ui.label
    markers: tuple[ui.label, ui.label, ui.label, ui.label]  # left, right, top, bottom


def _marker(side: str, style: str) -> ui.label:
    return ui.label().classes("radiant-marker").style(style).props(
        f"data-testid=marker-{side}").mark(f"marker-{side}")


def viewport() -> Viewport:
    """Build the viewport in the current container."""
    ui.add_css(VIEWER_CSS)
    element = ui.element("div").classes("radiant-viewport w-full").mark("viewport")
    with element:
        with ui.element("div").classes("radiant-stage absolute-full"):
            plate = ui.element("div").classes("radiant-plate").props("data-aspect=1")
            with plate:
                image = ui.interactive_image(events=[]).style(
                    "width: 100%; height: 100%").props("data-testid=viewer-image")
        with ui.element("div").classes("radiant-overlay-box").props(
                "data-testid=overlay-box"):
            top_left = ui.label().classes("radiant-overlay").style(
                "top: 6px; left: 8px").mark("overlay-demographics").props(
                "data-testid=overlay-demographics")
            top_right = ui.label().classes("radiant-overlay text-right").style(
                "top: 6px; right: 8px").mark("overlay-technique").props(
                "data-testid=overlay-technique")
            bottom_left = ui.label().classes("radiant-overlay").style(
                "bottom: 6px; left: 8px").props("data-testid=slice-label").mark("slice-label")
            with ui.element("div").classes("radiant-overlay text-right").style(
                "bottom: 6px; right: 8px"
            ).props("data-testid=overlay-window-box"):
                preset_label = ui.label().props("data-testid=overlay-preset").mark(
                    "overlay-preset")
                window_label = ui.label().classes("radiant-wl").props(
                    "data-testid=overlay-window").mark("overlay-window")
                ui.element("div").classes("radiant-zoom").props("data-testid=overlay-zoom")
            markers = (
                _marker("left", "left: 6px; top: 50%; transform: translateY(-50%)"),
                _marker("right", "right: 6px; top: 50%; transform: translateY(-50%)"),
                _marker("top", "top: 6px; left: 50%; transform: translateX(-50%)"),
                _marker("bottom", "bottom: 6px; left: 50%; transform: translateX(-50%)"),
            )
    return Viewport(element, plate, image, top_left, top_right, bottom_left, preset_label,
                    window_label, markers)
