"""Reading the findings object, its boxes and its urgency; the narrative fallback."""

from __future__ import annotations

from typing import Any

from ai.parsing.fields import (
    clean,
    read_change,
    read_confidence,
    read_measurements,
    read_slice,
    read_text,
    to_number,
)
from ai.parsing.keys import (
    CHANGE_KEYS,
    CONFIDENCE_KEYS,
    DESCRIPTION_KEYS,
    IMPRESSION_KEYS,
    LOCATION_KEYS,
    MEASUREMENT_KEYS,
    OVERALL_KEYS,
    PLACEHOLDER,
    SLICE_KEYS,
    URGENCY_KEYS,
    URGENCY_REASON_KEYS,
    first,
    normalized,
)
from ai.parsing.models import BOX_SCALE, Box, Expect, Notes, ParsedFinding, UrgencyLevel


def read_findings_doc(
    doc: Any, notes: Notes, slice_count: int | None
) -> tuple[list[ParsedFinding], str | None, list[Box]]:
    overall: str | None = None
    if isinstance(doc, list):
        notes.repair("findings list had no wrapping object")
        items: Any = doc
    else:
        keys = normalized(doc)
        items = keys["findings"]
        for key in OVERALL_KEYS:
            if key in keys and keys[key] is not None:
                overall = read_text(keys[key], f"overall impression ({key})", notes)
                break
    findings: list[ParsedFinding] = []
    boxes: list[Box] = []
    if items is None:
        notes.problem("'findings' is null")
        return findings, overall, boxes
    if isinstance(items, str):
        notes.problem("'findings' is plain text, not a list; kept as one narrative finding")
        text = clean(items)
        if text:
            findings.append(ParsedFinding(index=0, description=text, origin="narrative"))
        return findings, overall, boxes
    if isinstance(items, dict):
        notes.repair("'findings' was a single object, not a list")
        items = [items]
    if not isinstance(items, list):
        notes.problem(f"'findings' is a {type(items).__name__}, not a list")
        return findings, overall, boxes
    for position, item in enumerate(items, start=1):
        finding = _read_finding(item, position, len(findings), notes, slice_count)
        if finding is None:
            continue
        findings.append(finding)
        if isinstance(item, dict):
            keys = normalized(item)
            if "box_2d" in keys:
                label = finding.location or finding.description
                boxes.extend(
                    read_boxes(
                        [{"box_2d": keys["box_2d"], "label": label}],
                        notes,
                        finding.index,
                        name=f"finding {position} box",
                    )
                )
    return findings, overall, boxes


def _read_finding(
    item: Any, position: int, index: int, notes: Notes, slice_count: int | None
) -> ParsedFinding | None:
    where = f"finding {position}"
    if isinstance(item, str):
        text = clean(item)
        if not text:
            notes.problem(f"{where} is empty and was dropped")
            return None
        notes.repair(f"{where} was plain text, read as its description")
        return ParsedFinding(index=index, description=text)
    if not isinstance(item, dict):
        notes.problem(f"{where} is a {type(item).__name__}, not an object; dropped")
        return None
    keys = normalized(item)
    found = first(keys, DESCRIPTION_KEYS)
    description = read_text(found[1], f"{where} description", notes) if found else None
    found = first(keys, IMPRESSION_KEYS)
    impression = read_text(found[1], f"{where} impression", notes) if found else None
    found = first(keys, LOCATION_KEYS)
    location = read_text(found[1], f"{where} location", notes) if found else None
    if not description:
        if not impression:
            notes.problem(f"{where} has no description or impression and was dropped")
            return None
        notes.repair(f"{where} has no description; its impression is used as the description")
        description = impression
    found = first(keys, CONFIDENCE_KEYS)
    confidence = read_confidence(found[1], where, notes) if found else None
    found = first(keys, MEASUREMENT_KEYS)
    measurements = read_measurements(found[1], where, notes) if found else ()
    found = first(keys, SLICE_KEYS)
    slice_number = read_slice(found[1], where, notes, slice_count) if found else None
    found = first(keys, CHANGE_KEYS)
    change = read_change(found[1], where, notes) if found else None
    return ParsedFinding(
        index=index,
        description=description,
        location=location,
        impression=impression,
        confidence_raw=confidence,
        measurements=measurements,
        slice=slice_number,
        interval_change=change,
    )


def box_items(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        boxes = normalized(doc).get("boxes")
        return boxes if isinstance(boxes, list) else []
    return doc if isinstance(doc, list) else []


def read_boxes(
    items: list[Any], notes: Notes, finding_index: int | None, name: str | None = None
) -> list[Box]:
    boxes: list[Box] = []
    for position, item in enumerate(items, start=1):
        where = name or f"box {position}"
        if not isinstance(item, dict):
            notes.problem(f"{where} is a {type(item).__name__}; dropped")
            continue
        keys = normalized(item)
        coords = keys.get("box_2d")
        numbers = [to_number(value) for value in coords] if isinstance(coords, list) else []
        if len(numbers) != 4 or any(number is None for number in numbers):
            notes.problem(f"{where} box_2d {coords!r} is not four numbers; dropped")
            continue
        y0, x0, y1, x1 = (float(number) for number in numbers if number is not None)
        clamped = [min(max(value, 0.0), BOX_SCALE) for value in (y0, x0, y1, x1)]
        if clamped != [y0, x0, y1, x1]:
            notes.repair(f"{where} coordinates clamped to 0..1000")
            y0, x0, y1, x1 = clamped
        if y0 > y1 or x0 > x1:
            notes.repair(f"{where} corners were swapped")
            y0, y1 = min(y0, y1), max(y0, y1)
            x0, x1 = min(x0, x1), max(x0, x1)
        label_value = keys.get("label")
        label = read_text(label_value, f"{where} label", notes) if label_value is not None else None
        boxes.append(Box(y0=y0, x0=x0, y1=y1, x1=x1, label=label, finding_index=finding_index))
    return boxes


def narrative(answer: str, notes: Notes, expect: Expect) -> list[ParsedFinding]:
    """The fallback: the whole answer as one narrative finding, never more, never invented."""
    wanted = "findings JSON" if expect == "findings" else "box_2d JSON list"
    text = clean(answer)
    if not text:
        notes.problem(f"the model gave no answer text (no {wanted})")
        return []
    notes.problem(f"no usable {wanted} in the answer; kept as one narrative finding")
    return [ParsedFinding(index=0, description=text, origin="narrative")]


def read_urgency(doc: Any, expect: Expect) -> tuple[UrgencyLevel, str | None, str | None]:
    """``(level, reason, flag)`` from the findings object; never raises. Anything but
    critical / urgent / routine (any case) is ``routine`` with a flag naming what was there."""
    if expect != "findings":
        return "routine", None, "not requested"
    if not isinstance(doc, dict):
        return "routine", None, "absent"
    keys = normalized(doc)
    found = first(keys, URGENCY_KEYS)
    reason_found = first(keys, URGENCY_REASON_KEYS)
    reason: str | None = None
    if reason_found is not None and isinstance(reason_found[1], str):
        cleaned = clean(reason_found[1])
        reason = cleaned[:500] if cleaned and not PLACEHOLDER.match(cleaned) else None
    if found is None:
        return "routine", reason, "absent"
    value = found[1]
    word = clean(value).lower().strip(" .") if isinstance(value, str) else None
    if word in ("critical", "urgent", "routine"):
        level: UrgencyLevel = (
            "critical" if word == "critical" else ("urgent" if word == "urgent" else "routine")
        )
        return level, reason, None
    shown = repr(value)[:60]
    return "routine", reason, f"invalid: {shown}"
