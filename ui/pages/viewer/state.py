"""What the viewer shows (series, slices, preset, window, box) and the pure helpers that
turn it into overlay text, SVG and data URLs."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from appliance.analysis.models import AnalysisOut, FindingOut
from appliance.dicom import preview
from appliance.dicom.orientation import Markers
from appliance.studies.models import InstanceOut, StudyDetail

PRESETS = ("auto", "soft", "lung", "bone", "brain", "liver")


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
    shown_source: str | None = None  # how its window was chosen (preview.WindowSource)
    shown_preset: str | None = None  # the preset it was rendered with (None: not applied)
    markers: Markers | None = None  # its orientation letters
    decoder: str | None = None  # a fallback pixel decoder it needed (gdcm), if any
    window_gen: int = 0  # bumped by each preset: drags begun before it are stale
    rendering: bool = False
    box: dict[str, Any] | None = None
    box_slice: int | None = None


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def window_numbers(value: float) -> str:
    """A window value for the overlay (at most one decimal)."""
    return f"{round(value, 1):g}"


def dragged_window(args: Any, gen: int | None = None) -> tuple[float, float] | None:
    """The (center, width) a drag sent, or None when it is not a usable window or, with
    ``gen``, when the drag began before the latest preset (its ``gen`` is older)."""
    if not isinstance(args, dict):
        return None
    if gen is not None and "gen" in args and args["gen"] != gen:
        return None
    try:
        center, width = float(args["center"]), float(args["width"])
        checked = preview.explicit_window(center, width)
    except (KeyError, TypeError, ValueError):
        return None
    return (checked.center, checked.width) if checked is not None else None


def display_aspect(item: Slice) -> float:
    """Width over height of the image as displayed: columns x column spacing over rows x row
    spacing (Pixel Spacing (0028,0030) is row spacing, then column spacing; PS3.3 10.7.1.3);
    square pixels when the spacing is missing or implausible, square without a matrix."""
    rows, columns = item.instance.rows, item.instance.columns
    if not rows or not columns:
        return 1.0
    spacing = item.instance.pixel_spacing
    ratio = 1.0
    if spacing and len(spacing) == 2 and spacing[0] > 0 and spacing[1] > 0:
        ratio = spacing[1] / spacing[0]
        if not 0.2 <= ratio <= 5.0:
            ratio = 1.0
    return columns * ratio / rows


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


