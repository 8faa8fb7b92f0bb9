"""Choosing which JSON value in an answer holds the findings or the boxes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ai.parsing.json_text import Candidate
from ai.parsing.keys import DESCRIPTION_KEYS, IMPRESSION_KEYS, PLACEHOLDER, normalized
from ai.parsing.models import Notes


def _kind(value: Any) -> str | None:
    """``findings`` or ``boxes`` when ``value`` has that shape; otherwise None."""
    if isinstance(value, dict):
        keys = normalized(value)
        if "findings" in keys:
            return "findings"
        if "boxes" in keys and isinstance(keys["boxes"], list):
            return "boxes"
        return None
    if isinstance(value, list):
        if not value:
            return "boxes"  # an empty list is the focused prompt's "nothing found"
        if all(isinstance(item, dict) and "box_2d" in normalized(item) for item in value):
            return "boxes"
        if all(
            isinstance(item, dict)
            and any(key in normalized(item) for key in DESCRIPTION_KEYS + IMPRESSION_KEYS)
            for item in value
        ):
            return "findings"
    return None


def _is_template_echo(value: Any) -> bool:
    """True when every string is a ``<placeholder>``: the model echoed the prompt's schema."""
    strings = list(_strings_in(value))
    return bool(strings) and all(PLACEHOLDER.match(item) for item in strings)


def _strings_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def pick(candidates: list[Candidate], kind: str, notes: Notes) -> Any:
    """The last candidate of ``kind`` that is not an echo of the prompt's schema."""
    matching = [item for item in candidates if _kind(item.value) == kind]
    echoes = [item for item in matching if _is_template_echo(item.value)]
    if echoes:
        notes.repair("ignored JSON that echoes the prompt's schema placeholders")
    usable = [item for item in matching if item not in echoes]
    if kind == "boxes" and any(item.value for item in usable):
        usable = [item for item in usable if item.value]  # a filled list beats an empty one
    if not usable:
        return None
    chosen = usable[-1]
    if len(usable) > 1:
        if all(item.value == chosen.value for item in usable):
            notes.repair(f"the model repeated its {kind} JSON; read it once")
        else:
            notes.problem(
                f"the answer holds {len(usable)} different {kind} JSON blocks; "
                "the last one was used"
            )
    for label in chosen.repairs:
        notes.repair(label)
    return chosen.value
