"""Reading one field value (text, confidence, measurements, slice, change) as the model wrote it."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from ai.parsing.keys import PLACEHOLDER, normalized
from ai.parsing.models import IntervalChange, Measurement, Notes

_NUMBER_WITH_UNIT = re.compile(
    r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*([A-Za-zµμ°%][A-Za-z0-9µμ°%²³/^.]*)?\s*$"
)
_SLICE_TEXT = re.compile(r"^\s*(?:slice\s*(?:no\.?|number|#)?\s*)?(\d+)\s*$", re.IGNORECASE)

_CHANGE_WORDS: dict[str, IntervalChange] = {
    "new": "new",
    "newly appeared": "new",
    "resolved": "resolved",
    "disappeared": "resolved",
    "no longer seen": "resolved",
    "no longer visible": "resolved",
    "larger": "larger",
    "increased": "larger",
    "enlarged": "larger",
    "enlarging": "larger",
    "increased in size": "larger",
    "grown": "larger",
    "smaller": "smaller",
    "decreased": "smaller",
    "reduced": "smaller",
    "decreased in size": "smaller",
    "shrunk": "smaller",
    "stable": "stable",
    "unchanged": "stable",
    "no change": "stable",
    "no significant change": "stable",
    "no interval change": "stable",
}


def clean(text: str) -> str:
    """Text without control characters (newlines and tabs become spaces), trimmed."""
    kept = []
    for char in text:
        if char in "\n\r\t":
            kept.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cf"):
            continue
        else:
            kept.append(char)
    return re.sub(r" {2,}", " ", "".join(kept)).strip()


def read_text(value: Any, where: str, notes: Notes) -> str | None:
    if isinstance(value, str):
        if PLACEHOLDER.match(value):
            notes.problem(f"{where} is the prompt's placeholder {value.strip()!r}; ignored")
            return None
        return clean(value) or None
    if isinstance(value, bool) or value is None:
        notes.problem(f"{where} is {value!r}, not text; ignored")
        return None
    if isinstance(value, int | float):
        notes.repair(f"{where} was a number, read as text")
        return str(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        notes.repair(f"{where} was a list of texts, joined")
        return clean("; ".join(value)) or None
    notes.problem(f"{where} is a {type(value).__name__}, not text; ignored")
    return None


def read_confidence(value: Any, where: str, notes: Notes) -> float | str | None:
    if isinstance(value, bool):
        notes.problem(f"{where} confidence is {value!r}; ignored")
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            notes.problem(f"{where} confidence is not finite; ignored")
            return None
        return float(value)
    if isinstance(value, str):
        return clean(value) or None
    notes.problem(f"{where} confidence is a {type(value).__name__}; ignored")
    return None


def to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "."))
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def read_measurements(value: Any, where: str, notes: Notes) -> tuple[Measurement, ...]:
    if isinstance(value, dict | str):
        value = [value]
    if not isinstance(value, list):
        notes.problem(f"{where} measurements are a {type(value).__name__}; ignored")
        return ()
    result: list[Measurement] = []
    for position, item in enumerate(value, start=1):
        label = f"{where} measurement {position}"
        if isinstance(item, str):
            match = _NUMBER_WITH_UNIT.match(item)
            text = clean(item)
            if match:
                text_value = float(match.group(1).replace(",", "."))
                result.append(Measurement(value=text_value, unit=match.group(2)))
                notes.repair(f"{label} was plain text, split into value and unit")
            elif text:
                result.append(Measurement(value=text))
            continue
        if not isinstance(item, dict):
            notes.problem(f"{label} is a {type(item).__name__}; ignored")
            continue
        keys = normalized(item)
        name = read_text(keys["name"], f"{label} name", notes) if keys.get("name") else None
        unit = read_text(keys["unit"], f"{label} unit", notes) if keys.get("unit") else None
        raw = keys.get("value")
        if raw is None or isinstance(raw, bool) or (isinstance(raw, str) and not raw.strip()):
            notes.problem(f"{label} has no value and was dropped")
            continue
        number = to_number(raw)
        if number is not None:
            result.append(Measurement(name=name, value=number, unit=unit))
            continue
        if isinstance(raw, str):
            match = _NUMBER_WITH_UNIT.match(raw)
            if match and unit is None and match.group(2):
                split_value = float(match.group(1).replace(",", "."))
                result.append(Measurement(name=name, value=split_value, unit=match.group(2)))
                notes.repair(f"{label} value held its unit, split")
            else:
                result.append(Measurement(name=name, value=clean(raw), unit=unit))
            continue
        notes.problem(f"{label} value is a {type(raw).__name__}; dropped")
    return tuple(result)


def read_slice(value: Any, where: str, notes: Notes, slice_count: int | None) -> int | None:
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
        notes.repair(f"{where} slice was a float, read as an integer")
    elif isinstance(value, str):
        match = _SLICE_TEXT.match(value)
        if match:
            number = int(match.group(1))
            notes.repair(f"{where} slice was text, read as an integer")
    if number is None:
        notes.problem(f"{where} slice {value!r} is not a slice number; ignored")
        return None
    if number < 1 or (slice_count is not None and number > slice_count):
        limit = f"1..{slice_count}" if slice_count is not None else "1 or more"
        notes.problem(f"{where} slice {number} is outside {limit}; ignored")
        return None
    return number


def read_change(value: Any, where: str, notes: Notes) -> IntervalChange | None:
    if isinstance(value, str):
        word = re.sub(r"\s+", " ", value.strip().lower().rstrip("."))
        if word in _CHANGE_WORDS:
            return _CHANGE_WORDS[word]
    notes.problem(f"{where} interval change {value!r} is not new/resolved/larger/smaller/stable")
    return None
