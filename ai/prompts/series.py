"""Series selection as data (like MONAI Deploy's selection rules): which series the model sees.

Rules live in ``series_selection.json``. For a study's modality the rules are tried in order;
the first rule that matches at least one series wins and the matching series with the most
instances is chosen (ties: lowest Series Number, then Series Instance UID). A rule can require a
plane (axial / coronal / sagittal, from Image Orientation (Patient)), a Slice Thickness range, a
Series Description regex to include and one to exclude, and a minimum number of instances.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

RULES_PATH = Path(__file__).resolve().parent / "series_selection.json"
#: The slice normal must lie within about 37 degrees of an axis to count as that plane.
PLANE_MIN_COSINE = 0.8

Orientation = Literal["axial", "coronal", "sagittal", "oblique"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeriesInfo(_Frozen):
    """What selection needs to know about one series (from its first instance)."""

    series_instance_uid: str
    modality: str
    instance_count: int
    image_count: int | None = None  # slices/frames: an enhanced multi-frame file counts each
    series_description: str = ""
    series_number: int | None = None
    image_orientation_patient: tuple[float, float, float, float, float, float] | None = None
    slice_thickness: float | None = None


def images_of(series: SeriesInfo) -> int:
    """The slices or frames of a series (its instance count when frames are not known)."""
    return series.image_count if series.image_count is not None else series.instance_count


class ThicknessRange(_Frozen):
    """Slice Thickness (0018,0050) limits in mm, inclusive."""

    min: float | None = None
    max: float | None = None


class SelectionRule(_Frozen):
    """One rule of ``series_selection.json``."""

    name: str
    modality: tuple[str, ...]
    orientation: Orientation | None = None
    slice_thickness_mm: ThicknessRange | None = None
    description_include: str | None = None
    description_exclude: str | None = None
    min_instances: int = 1
    prefer: Literal["most_instances"] = "most_instances"

    @field_validator("description_include", "description_exclude")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    def rejection(self, series: SeriesInfo) -> str | None:
        """Why ``series`` does not match this rule, in plain English, or None when it does.
        Counts are slices/frames (:func:`images_of`), so one enhanced multi-frame file of
        520 frames counts 520."""
        found = self.refusal(series)
        return None if found is None else refusal_words(*found)

    def refusal(self, series: SeriesInfo) -> tuple[str, dict[str, str | int | float]] | None:
        """:meth:`rejection` as a code and its values (:data:`REFUSAL_WORDS`), for screens
        that say it in their own language."""
        if series.modality.upper() not in {item.upper() for item in self.modality}:
            return "modality", {"modality": series.modality, "wanted": "/".join(self.modality)}
        images = images_of(series)
        if images < self.min_instances:
            return "too_few_images", {"count": images, "needed": self.min_instances}
        if self.orientation is not None:
            plane = orientation_of(series.image_orientation_patient)
            if plane != self.orientation:
                return "orientation", {"plane": plane or "", "wanted": self.orientation}
        limits = self.slice_thickness_mm
        if limits is not None:
            thickness = series.slice_thickness
            if thickness is None:
                return "thickness_unknown", {}
            if (limits.min is not None and thickness < limits.min) or (
                limits.max is not None and thickness > limits.max
            ):
                low = f"{limits.min:g}" if limits.min is not None else "0"
                high = f"{limits.max:g}" if limits.max is not None else "any"
                return "thickness", {"thickness": f"{thickness:g}", "low": low, "high": high}
        description = series.series_description or ""
        if self.description_include and not re.search(
            self.description_include, description, re.IGNORECASE
        ):
            return "description_include", {"description": description}
        if self.description_exclude and re.search(
            self.description_exclude, description, re.IGNORECASE
        ):
            return "description_exclude", {"description": description}
        return None


#: The English words of each refusal code (the screens' catalogs say the same).
REFUSAL_WORDS = {
    "modality": "it is {modality}, not {wanted}",
    "too_few_images": "it has {count} {images}; at least {needed} are needed",
    "orientation": "its images are {plane}, not {wanted}",
    "thickness_unknown": "its slice thickness is not recorded",
    "thickness": "its slices are {thickness} mm thick, outside {low} to {high} mm",
    "description_include": "its description {description!r} is not the kind of series this "
    "rule wants",
    "description_exclude": "its description {description!r} marks it as a helper series "
    "(scout, localizer, dose report or reformat)",
}


def refusal_words(code: str, values: dict[str, str | int | float]) -> str:
    """A refusal of :meth:`SelectionRule.refusal` in plain English."""
    shown = dict(values)
    if code == "modality" and not shown.get("modality"):
        shown["modality"] = "of unknown modality"
    if code == "orientation" and not shown.get("plane"):
        shown["plane"] = "of unknown orientation"
    if code == "too_few_images":
        shown["images"] = "image" if int(shown["count"]) == 1 else "images"
    return REFUSAL_WORDS[code].format(**shown)


class SeriesSelection(_Frozen):
    """The chosen series (None when nothing fits), the rule that chose it and why."""

    series: SeriesInfo | None
    rule: str | None
    reason: str


def orientation_of(iop: Sequence[float] | None) -> Orientation | None:
    """Plane of an image from its Image Orientation (Patient): the axis nearest the normal.

    The normal is row x column (PS3.3 C.7.6.2.1.1); patient axes are LPS, so a normal mostly
    along x is sagittal, along y coronal, along z axial; none within ``PLANE_MIN_COSINE`` is
    oblique. None when IOP is missing or degenerate.
    """
    if iop is None or len(iop) != 6 or not all(math.isfinite(v) for v in iop):
        return None
    row, col = iop[:3], iop[3:]
    normal = (
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    )
    length = math.sqrt(sum(value * value for value in normal))
    if length < 0.5:
        return None
    cosines = [abs(value) / length for value in normal]
    axis = max(range(3), key=lambda index: cosines[index])
    if cosines[axis] < PLANE_MIN_COSINE:
        return "oblique"
    planes: tuple[Orientation, Orientation, Orientation] = ("sagittal", "coronal", "axial")
    return planes[axis]


@cache
def _rules_from(path: Path) -> tuple[SelectionRule, ...]:
    data: Any = json.loads(path.read_text(encoding="utf-8"))
    return tuple(SelectionRule.model_validate(item) for item in data["rules"])


def load_selection_rules(path: Path | None = None) -> tuple[SelectionRule, ...]:
    """The rules of ``series_selection.json`` (or another file of the same shape)."""
    return _rules_from((path or RULES_PATH).resolve())


def _preference(series: SeriesInfo) -> tuple[int, int, str]:
    number = series.series_number if series.series_number is not None else 2**31
    return (-images_of(series), number, series.series_instance_uid)


def select_series(
    candidates: Sequence[SeriesInfo],
    modality: str,
    rules: Sequence[SelectionRule] | None = None,
) -> SeriesSelection:
    """Choose the series of ``modality`` to analyse, with the reason for the choice."""
    code = modality.strip().upper()
    pool = [item for item in candidates if item.modality.strip().upper() == code]
    if not pool:
        return SeriesSelection(
            series=None, rule=None, reason=f"no {code} series among {len(candidates)} candidates"
        )
    applicable = [rule for rule in (rules or load_selection_rules()) if code in rule.modality]
    if not applicable:
        return SeriesSelection(series=None, rule=None, reason=f"no selection rule for {code}")
    misses: list[str] = []
    for rule in applicable:
        matches = [item for item in pool if rule.rejection(item) is None]
        if not matches:
            continue
        chosen = min(matches, key=_preference)
        reason = (
            f"rule {rule.name!r} matched {len(matches)} of {len(pool)} {code} series; chose "
            f"series {chosen.series_number} {chosen.series_description!r} "
            f"({images_of(chosen)} images): most images"
        )
        return SeriesSelection(series=chosen, rule=rule.name, reason=reason)
    last = applicable[-1]
    for item in pool:
        misses.append(
            f"series {item.series_number} {item.series_description!r}: {last.rejection(item)}"
        )
    return SeriesSelection(
        series=None,
        rule=None,
        reason=(
            f"no {code} series matched any rule; against the last rule {last.name!r}: "
            + "; ".join(misses)
        ),
    )
