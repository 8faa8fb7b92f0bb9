"""Finding the JSON values in an answer's text, repairing harmless syntax slips on the way."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ai.parsing.models import Notes

_SMART_DOUBLE = dict.fromkeys(map(ord, "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"), '"')
_SMART_SINGLE = dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032"), "'")
#: A safety valve against pathological input: give up scanning after this many bracket starts.
_MAX_SCAN_STARTS = 2000


class Candidate:
    """A JSON value found in the answer: where it was, what it holds, what was repaired."""

    def __init__(self, start: int, value: Any, repairs: list[str]) -> None:
        self.start = start
        self.value = value
        self.repairs = repairs


def json_candidates(text: str, notes: Notes) -> tuple[list[Candidate], int | None]:
    """Every balanced ``{...}`` / ``[...]`` span in ``text`` that parses (after repairs), and
    where an answer-like JSON block starts that is never closed (None if there is none)."""
    candidates: list[Candidate] = []
    position = 0
    starts = 0
    unclosed: int | None = None
    while position < len(text):
        if text[position] not in "{[":
            position += 1
            continue
        starts += 1
        if starts > _MAX_SCAN_STARTS:
            notes.problem("answer has too many brackets; stopped looking for JSON")
            break
        end = _balanced_end(text, position)
        if end is None:
            if unclosed is None and _looks_like_answer_json(text[position:]):
                unclosed = position
            position += 1
            continue
        chunk = text[position:end]
        loaded = _load_json(chunk)
        if isinstance(loaded, str):
            if _looks_like_answer_json(chunk):
                notes.problem(f"unparseable JSON block at character {position}: {loaded}")
        else:
            value, repairs = loaded
            candidates.append(Candidate(position, value, repairs))
        position = end
    return candidates, unclosed


def _balanced_end(text: str, start: int) -> int | None:
    """Index after the bracket closing the one at ``start`` (string-aware), or None."""
    closing = {"{": "}", "[": "]"}
    stack: list[str] = []
    in_string = False
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in closing:
            stack.append(closing[char])
        elif char in "}]":
            if not stack or stack.pop() != char:
                return None
            if not stack:
                return index + 1
    return None


def _looks_like_answer_json(chunk: str) -> bool:
    """A failed span worth reporting: it names one of the answer's keys."""
    return bool(re.search(r"findings|box_2d|description|overall_impression", chunk, re.I))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _strict_loads(chunk: str) -> Any:
    return json.loads(chunk, parse_constant=_reject_constant)


def _load_json(chunk: str) -> tuple[Any, list[str]] | str:
    """Parse ``chunk``, applying repairs one by one; the error text when nothing works."""
    steps: list[tuple[str, Callable[[str], str]]] = [
        ("replaced typographic quotes with plain quotes", _plain_quotes),
        ("removed comments", _remove_comments),
        ("removed trailing commas", _remove_trailing_commas),
    ]
    try:
        return _strict_loads(chunk), []
    except ValueError as error:
        last_error = str(error)
    repaired = chunk
    applied: list[str] = []
    for label, step in steps:
        changed = step(repaired)
        if changed == repaired:
            continue
        repaired = changed
        applied.append(label)
        try:
            return _strict_loads(repaired), applied
        except ValueError as error:
            last_error = str(error)
    return last_error


def _plain_quotes(chunk: str) -> str:
    return chunk.translate(_SMART_DOUBLE).translate(_SMART_SINGLE)


def _outside_strings(chunk: str, edit: Callable[[str, int], tuple[str, int] | None]) -> str:
    """Rebuild ``chunk`` letting ``edit`` rewrite text outside JSON strings.

    ``edit(chunk, index)`` returns ``(replacement, next_index)`` or None to keep the character.
    """
    out: list[str] = []
    index = 0
    in_string = False
    escaped = False
    while index < len(chunk):
        char = chunk[index]
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            index += 1
            continue
        if char == '"':
            in_string = True
            out.append(char)
            index += 1
            continue
        edited = edit(chunk, index)
        if edited is None:
            out.append(char)
            index += 1
        else:
            out.append(edited[0])
            index = edited[1]
    return "".join(out)


def _remove_comments(chunk: str) -> str:
    def edit(text: str, index: int) -> tuple[str, int] | None:
        if text.startswith("//", index):
            end = text.find("\n", index)
            return ("", len(text) if end < 0 else end)
        if text.startswith("/*", index):
            end = text.find("*/", index + 2)
            return ("", len(text) if end < 0 else end + 2)
        return None

    return _outside_strings(chunk, edit)


def _remove_trailing_commas(chunk: str) -> str:
    def edit(text: str, index: int) -> tuple[str, int] | None:
        if text[index] != ",":
            return None
        rest = index + 1
        while rest < len(text) and text[rest].isspace():
            rest += 1
        if rest < len(text) and text[rest] in "}]":
            return ("", index + 1)
        return None

    return _outside_strings(chunk, edit)
