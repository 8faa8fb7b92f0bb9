"""Stacking: frames that share slice positions split into stacks by their non-spatial keys
(4D time points, echoes, frame types, ...), each stack sorted along the normal and split
at missing slices into gap-free blocks.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from appliance.volumes import geometry
from appliance.volumes.assemble import BuildContext, assemble, single_image
from appliance.volumes.frames.base import Frame
from appliance.volumes.results import (
    MISSING_SLICES,
    SPLIT_4D,
    SPLIT_NON_SPATIAL,
    FloatArray,
    QANote,
    VolumeResult,
)

# Keys tried, in this order, to separate frames that share a slice position.
_SPLIT_KEYS = (
    "series",
    "stack",
    "frame_type",
    "echo",
    "diffusion",
    "temporal",
    "acquisition",
    "dimension",
)
_TIME_KEYS = frozenset({"temporal", "acquisition"})
# Keys whose volumes come in the order their frames were acquired (as stored), not by value:
# a diffusion series' b-values and gradient directions (PS3.3 C.8.13.5.9).
_ACQUISITION_ORDER_KEYS = frozenset({"diffusion"})
# Keys accepted only when every group they make has unique positions.
_STRICT_KEYS = frozenset({"series", "acquisition", "dimension"})
_KEY_NAMES = {
    "series": "series (Series Instance UID / Series Number)",
    "stack": "Stack ID",
    "frame_type": "frame type",
    "echo": "echo",
    "diffusion": "diffusion b-value/direction",
    "temporal": "temporal position",
    "acquisition": "Acquisition Number",
    "dimension": "dimension index values",
}


@dataclass(slots=True)
class Stack:
    """Frames that form one volume, with the labels and notes of the splits that made them."""

    frames: list[Frame]
    labels: list[str]
    notes: list[QANote]


def normal_distances(frames: Sequence[Frame], normal: FloatArray) -> FloatArray:
    """Each frame's position projected on the slice normal (mm)."""
    positions = np.array([f.position for f in frames], dtype=np.float64)
    return geometry.project_on_normal(positions, normal)


def _sort_value(value: Hashable) -> tuple[int, str]:
    return (0, f"{value:020.6f}") if isinstance(value, int | float) else (1, repr(value))


def _ordered_values(frames: Sequence[Frame], key: str) -> list[Hashable]:
    """The distinct values of ``key``: sorted, or for :data:`_ACQUISITION_ORDER_KEYS` in the
    order of their first frame (file order, then frame index)."""
    if key not in _ACQUISITION_ORDER_KEYS:
        return sorted({f.keys.get(key) for f in frames}, key=_sort_value)
    first: dict[Hashable, int] = {}
    for frame in sorted(frames, key=lambda f: f.order):
        first.setdefault(frame.keys.get(key), frame.order)
    return list(first)


def split_stacks(
    frames: list[Frame], normal: FloatArray, labels: list[str], notes: list[QANote]
) -> list[Stack]:
    """Split frames sharing slice positions by their non-spatial keys (recursively)."""
    if not geometry.has_repeated_positions(normal_distances(frames, normal)):
        return [Stack(frames, labels, notes)]
    for key in _SPLIT_KEYS:
        values = _ordered_values(frames, key)
        if len(values) < 2:
            continue
        groups = [[f for f in frames if f.keys.get(key) == value] for value in values]
        if key in _STRICT_KEYS and any(
            geometry.has_repeated_positions(normal_distances(g, normal)) for g in groups
        ):
            continue
        result = []
        for number, group in enumerate(groups, start=1):
            label = group[0].labels.get(key, f"{_KEY_NAMES[key]} {number}")
            if key in _TIME_KEYS:
                label = f"time {number} of {len(groups)}"
            note = _split_note(key, len(groups), frames, normal)
            result.extend(split_stacks(group, normal, [*labels, label], [*notes, note]))
        return result
    return _split_by_repeat_order(frames, normal, labels, notes)


def _split_note(key: str, count: int, frames: Sequence[Frame], normal: FloatArray) -> QANote:
    positions = _unique_positions(normal_distances(frames, normal))
    if key in _TIME_KEYS:
        return QANote(
            SPLIT_4D,
            f"4D series: {positions} slice positions repeated over {count} time points; split "
            f"into {count} 3D volumes by {_KEY_NAMES[key]}.",
            {"time_points": count, "positions": positions, "by": key},
        )
    return QANote(
        SPLIT_NON_SPATIAL,
        f"Several images per slice position that differ by {_KEY_NAMES[key]}; split into "
        f"{count} volumes.",
        {"volumes": count, "by": key},
    )


def _unique_positions(distances: FloatArray) -> int:
    ordered = np.sort(distances)
    return int(1 + np.count_nonzero(np.diff(ordered) >= geometry.POSITION_TOLERANCE_MM))


def _position_clusters(distances: FloatArray) -> list[int]:
    """Cluster index of each distance (positions closer than the tolerance share one)."""
    order = np.argsort(distances, kind="stable")
    cluster = [0] * len(distances)
    current, previous = 0, None
    for index in order:
        if previous is not None and distances[index] - previous >= geometry.POSITION_TOLERANCE_MM:
            current += 1
        cluster[int(index)] = current
        previous = distances[index]
    return cluster


def _split_by_repeat_order(
    frames: list[Frame], normal: FloatArray, labels: list[str], notes: list[QANote]
) -> list[Stack]:
    """Time point k holds the k-th occurrence of each position, in Instance Number order."""
    ordered = sorted(
        frames, key=lambda f: (f.instance if f.instance is not None else 1 << 62, f.order)
    )
    clusters = _position_clusters(normal_distances(ordered, normal))
    seen: dict[int, int] = {}
    occurrence = []
    for cluster in clusters:
        occurrence.append(seen.get(cluster, 0))
        seen[cluster] = occurrence[-1] + 1
    count = max(occurrence) + 1
    note = QANote(
        SPLIT_4D,
        f"4D series: {len(seen)} slice positions repeated over {count} time points; split into "
        f"{count} 3D volumes by the order of repeats (Instance Number).",
        {"time_points": count, "positions": len(seen), "by": "repeat_order"},
    )
    return [
        Stack(
            [f for f, k in zip(ordered, occurrence, strict=True) if k == time],
            [*labels, f"time {time + 1} of {count}"],
            [*notes, note],
        )
        for time in range(count)
    ]


def build_stack(stack: Stack, direction: FloatArray, context: BuildContext) -> list[VolumeResult]:
    """The volumes of one stack: sorted along the normal, split at missing slices, each block
    assembled (a lone slice as a 2D result)."""
    frames = stack.frames
    shapes = {(f.rows, f.columns, f.pixel_spacing) for f in frames}
    if len(shapes) > 1:
        reason = "Images of this stack differ in matrix size or pixel spacing; not stacked."
        return [single_image(f, context, reason) for f in frames]
    distances = normal_distances(frames, direction[:, 2])
    order = np.argsort(distances, kind="stable")
    frames = [frames[int(i)] for i in order]
    distances = distances[order]
    steps = np.diff(distances)
    gaps = geometry.find_gaps(steps, [f.instance for f in frames])
    bounds = [0, *(g + 1 for g in gaps), len(frames)]
    blocks = [frames[start:end] for start, end in itertools.pairwise(bounds)]
    results = []
    for number, block in enumerate(blocks, start=1):
        notes = [*context.series_notes, *stack.notes]
        labels = list(stack.labels)
        if gaps:
            notes.append(_gap_note(gaps, steps, distances, frames, number, len(blocks)))
            labels.append(f"block {number} of {len(blocks)}")
        label = ", ".join(labels) or "volume"
        if len(block) == 1:
            single = single_image(
                block[0],
                context,
                "Only one slice in this block (the rest of the series is "
                "separated by missing slices)."
                if gaps
                else "Only one slice: not a volume.",
            )
            single.notes = [*notes, *single.notes[len(context.series_notes) :]]
            single.label = label if labels else single.label
            results.append(single)
            continue
        results.append(assemble(block, direction, notes, label, context))
    return results


def _gap_note(
    gaps: list[int],
    steps: FloatArray,
    distances: FloatArray,
    frames: list[Frame],
    block: int,
    blocks: int,
) -> QANote:
    median = float(np.median(steps))
    places = []
    for gap in gaps:
        before, after = frames[gap], frames[gap + 1]
        places.append(
            {
                "after_slice": gap + 1,
                "from_mm": round(float(distances[gap]), 3),
                "to_mm": round(float(distances[gap + 1]), 3),
                "step_mm": round(float(steps[gap]), 3),
                "estimated_missing": max(1, round(float(steps[gap]) / median) - 1),
                "instance_before": before.instance,
                "instance_after": after.instance,
            }
        )
    where = "; ".join(
        f"{p['step_mm']:g} mm gap after sorted slice {p['after_slice']} (at {p['from_mm']:g} mm "
        f"along the normal, about {p['estimated_missing']} slices missing)"
        for p in places
    )
    return QANote(
        MISSING_SLICES,
        f"Missing slices: {where}. The median step is {median:g} mm. Not interpolated: the "
        f"series is split at the gap; this is block {block} of {blocks}.",
        {"gaps": places, "median_step_mm": median, "block": block, "blocks": blocks},
    )
