"""Parse a MedGemma answer into structured findings and boxes.

This module only reads structure: it strips the thinking trace, finds the JSON the model wrote,
repairs a few harmless syntax slips (each recorded in ``repairs``) and maps it onto typed
findings. It never interprets, hedges or scores anything (that is :mod:`ai.safety`) and never
creates a finding the model did not state: a missing value stays missing, an empty list stays
empty. When no usable JSON exists, the whole answer is kept as ONE narrative finding and the
result is marked ``needs_review`` with the reason.

Model answer format (Google's MedGemma notebooks):

- MedGemma 1.5 may think before answering, even unprompted: ``<unused94>thought\\n...`` then
  ``<unused95>`` then the answer. Everything up to the last ``<unused95>`` is dropped.
- Localization answers are a fenced json list ``[{"box_2d": [y0, x0, y1, x1], "label": ...}]``
  with coordinates normalized to 0..1000 of the padded square image.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

#: Start of a thinking trace (the model writes ``<unused94>thought`` then a newline).
THINKING_START = "<unused94>"
#: End of a thinking trace; the answer follows the last one.
THINKING_END = "<unused95>"
#: Normalized box coordinates run from 0 to this value (MedGemma localization).
BOX_SCALE = 1000.0

IntervalChange = Literal["new", "resolved", "larger", "smaller", "stable"]
UrgencyLevel = Literal["routine", "urgent", "critical"]
Expect = Literal["findings", "boxes"]

#: Gemma chat-template tokens that may trail an answer decoded without skipping special tokens.
_CONTROL_TOKENS = re.compile(r"<end_of_turn>|<start_of_turn>(?:model|user)?|<eos>|<bos>|<pad>")
_THOUGHT_HEADER = re.compile(r"^\s*thought\b[ \t]*\r?\n?", re.IGNORECASE)
_FINAL_ANSWER = re.compile(r"final\s+answer\s*:", re.IGNORECASE)
_JSON_FENCE = re.compile(r"```\s*json", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^\s*<[^<>]{1,80}>\s*$")
_NUMBER_WITH_UNIT = re.compile(
    r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*([A-Za-zµμ°%][A-Za-z0-9µμ°%²³/^.]*)?\s*$"
)
_SLICE_TEXT = re.compile(r"^\s*(?:slice\s*(?:no\.?|number|#)?\s*)?(\d+)\s*$", re.IGNORECASE)
_SMART_DOUBLE = dict.fromkeys(map(ord, "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"), '"')
_SMART_SINGLE = dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032"), "'")
#: A safety valve against pathological input: give up scanning after this many bracket starts.
_MAX_SCAN_STARTS = 2000

_DESCRIPTION_KEYS = ("description", "finding", "observation", "text")
_LOCATION_KEYS = ("location", "anatomical_location", "anatomic_location", "anatomy", "site")
_IMPRESSION_KEYS = ("impression", "hedged_impression", "interpretation")
_CONFIDENCE_KEYS = ("confidence", "confidence_score", "probability", "certainty")
_MEASUREMENT_KEYS = ("measurements", "measurement", "size")
_SLICE_KEYS = ("slice", "slice_number", "slice_index", "image_number")
_CHANGE_KEYS = ("change", "interval_change", "status")
_URGENCY_KEYS = ("urgency", "triage", "priority")
_URGENCY_REASON_KEYS = ("urgency_reason", "triage_reason", "priority_reason")
_OVERALL_KEYS = ("overall_impression", "overall", "summary", "conclusion", "impression")

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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Measurement(_Frozen):
    """One measurement as the model wrote it; ``value`` is a number when it parsed as one."""

    name: str | None = None
    value: float | str
    unit: str | None = None


class ParsedFinding(_Frozen):
    """A finding exactly as stated by the model (unhedged, unscored: see :mod:`ai.safety`).

    ``confidence_raw`` is the model's own value untouched (0..1, a percent, a word or missing).
    ``slice`` is 1-based, in the order the images were given. ``origin`` is ``narrative`` for the
    single finding kept when the answer had no usable JSON.
    """

    index: int
    description: str
    location: str | None = None
    impression: str | None = None
    confidence_raw: float | str | None = None
    measurements: tuple[Measurement, ...] = ()
    slice: int | None = None
    interval_change: IntervalChange | None = None
    origin: Literal["json", "narrative"] = "json"


class Box(_Frozen):
    """A box ``[y0, x0, y1, x1]`` in 0..1000 of the padded square image (``y0 <= y1``,
    ``x0 <= x1``), with the model's label and the finding it belongs to, if any."""

    y0: float
    x0: float
    y1: float
    x1: float
    label: str | None = None
    finding_index: int | None = None


class ParsedAnswer(_Frozen):
    """Everything read from one model answer.

    ``repairs`` lists syntax the parser had to fix; ``problems`` lists content it could not use
    or had to doubt. Any problem sets ``needs_review``. ``answer_text`` (the answer after the
    thinking trace) and ``raw_text`` are kept for the audit trail only.
    """

    findings: tuple[ParsedFinding, ...] = ()
    overall_impression: str | None = None
    boxes: tuple[Box, ...] = ()
    needs_review: bool = False
    problems: tuple[str, ...] = ()
    repairs: tuple[str, ...] = ()
    thinking_stripped: bool = False
    answer_text: str = ""
    raw_text: str = ""
    #: The model's study-level urgency; ``routine`` with ``urgency_flag`` set (``absent``,
    #: ``invalid: ...`` or ``not requested``) when it gave none that can be used.
    urgency: UrgencyLevel = "routine"
    urgency_reason: str | None = None
    urgency_flag: str | None = None

    @model_validator(mode="after")
    def _problems_need_review(self) -> ParsedAnswer:
        if self.problems and not self.needs_review:
            raise ValueError("a parsed answer with problems must be marked needs_review")
        return self


class ThinkingSplit(_Frozen):
    """The answer text with the thinking trace removed; ``problem`` says when that was a guess."""

    answer: str
    thinking: str
    stripped: bool
    problem: str | None = None


class _Notes:
    """Collects repairs (syntax fixed) and problems (content doubtful or lost)."""

    def __init__(self) -> None:
        self.repairs: list[str] = []
        self.problems: list[str] = []

    def repair(self, text: str) -> None:
        if text not in self.repairs:
            self.repairs.append(text)

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)


def strip_thinking(text: str) -> ThinkingSplit:
    """Drop the thinking trace: keep only what follows the last ``<unused95>``.

    Without an end marker, a ``<unused94>thought`` block is dropped up to the model's final
    answer (a ``Final Answer:`` marker or a fenced json block); with neither, everything after
    ``<unused94>`` is thinking and the answer is empty. Both guesses are reported as a problem.
    """
    end = text.rfind(THINKING_END)
    if end >= 0:
        thinking = text[:end]
        answer = text[end + len(THINKING_END) :]
        if THINKING_START in answer:
            # A new, unterminated thought after the last end marker.
            inner = strip_thinking(answer)
            return ThinkingSplit(
                answer=inner.answer,
                thinking=thinking + inner.thinking,
                stripped=True,
                problem=inner.problem,
            )
        return ThinkingSplit(answer=answer, thinking=thinking, stripped=True)
    start = text.find(THINKING_START)
    if start < 0:
        return ThinkingSplit(answer=text, thinking="", stripped=False)
    before = text[:start]
    block = _THOUGHT_HEADER.sub("", text[start + len(THINKING_START) :], count=1)
    finals = list(_FINAL_ANSWER.finditer(block))
    fence = _JSON_FENCE.search(block)
    if finals:
        cut = finals[-1].end()
        problem = (
            "thinking trace has no end marker <unused95>; the answer was taken from its "
            "last 'Final Answer:'"
        )
    elif fence is not None:
        cut = fence.start()
        problem = (
            "thinking trace has no end marker <unused95>; the answer was taken from its "
            "first fenced json block"
        )
    else:
        return ThinkingSplit(
            answer=before,
            thinking=block,
            stripped=True,
            problem="thinking trace has no end marker <unused95> and no answer after it",
        )
    return ThinkingSplit(
        answer=before + block[cut:], thinking=block[:cut], stripped=True, problem=problem
    )


def parse_answer(
    text: str, *, expect: Expect = "findings", slice_count: int | None = None
) -> ParsedAnswer:
    """Parse one model answer.

    ``expect`` names the answer the prompt asked for: ``findings`` (primary and comparison
    prompts) or ``boxes`` (focused prompt). ``slice_count`` is the number of images sent, so a
    slice number outside 1..slice_count is rejected instead of trusted.
    """
    notes = _Notes()
    split = strip_thinking(text)
    if split.problem:
        notes.problem(split.problem)
    answer = _CONTROL_TOKENS.sub("", split.answer)
    if THINKING_START in answer or THINKING_END in answer:
        answer = answer.replace(THINKING_START, "").replace(THINKING_END, "")
    answer = answer.strip()

    candidates, unclosed = _json_candidates(answer, notes)
    findings_doc = _pick(candidates, "findings", notes)
    boxes_doc = _pick(candidates, "boxes", notes)

    findings: list[ParsedFinding] = []
    boxes: list[Box] = []
    overall: str | None = None
    if findings_doc is not None:
        findings, overall, inner_boxes = _read_findings_doc(findings_doc, notes, slice_count)
        boxes.extend(inner_boxes)
    if boxes_doc is not None:
        boxes.extend(_read_boxes(_box_items(boxes_doc), notes, finding_index=None))

    urgency, urgency_reason, urgency_flag = _read_urgency(findings_doc, expect)
    expected_doc = findings_doc if expect == "findings" else boxes_doc
    if expected_doc is None:
        if unclosed is not None:
            notes.problem(f"JSON block at character {unclosed} is never closed (answer cut short?)")
        findings = _narrative(answer, notes, expect)
    return ParsedAnswer(
        findings=tuple(findings),
        overall_impression=overall,
        boxes=tuple(boxes),
        needs_review=bool(notes.problems),
        problems=tuple(notes.problems),
        repairs=tuple(notes.repairs),
        thinking_stripped=split.stripped,
        answer_text=answer,
        raw_text=text,
        urgency=urgency,
        urgency_reason=urgency_reason,
        urgency_flag=urgency_flag,
    )


def _read_urgency(doc: Any, expect: Expect) -> tuple[UrgencyLevel, str | None, str | None]:
    """``(level, reason, flag)`` from the findings object; never raises. Anything but
    critical / urgent / routine (any case) is ``routine`` with a flag naming what was there."""
    if expect != "findings":
        return "routine", None, "not requested"
    if not isinstance(doc, dict):
        return "routine", None, "absent"
    keys = _normalized(doc)
    found = _first(keys, _URGENCY_KEYS)
    reason_found = _first(keys, _URGENCY_REASON_KEYS)
    reason: str | None = None
    if reason_found is not None and isinstance(reason_found[1], str):
        cleaned = _clean(reason_found[1])
        reason = cleaned[:500] if cleaned and not _PLACEHOLDER.match(cleaned) else None
    if found is None:
        return "routine", reason, "absent"
    value = found[1]
    word = _clean(value).lower().strip(" .") if isinstance(value, str) else None
    if word in ("critical", "urgent", "routine"):
        level: UrgencyLevel = "critical" if word == "critical" else (
            "urgent" if word == "urgent" else "routine"
        )
        return level, reason, None
    shown = repr(value)[:60]
    return "routine", reason, f"invalid: {shown}"


# --- finding JSON in text -------------------------------------------------------------------


class _Candidate:
    """A JSON value found in the answer: where it was, what it holds, what was repaired."""

    def __init__(self, start: int, value: Any, repairs: list[str]) -> None:
        self.start = start
        self.value = value
        self.repairs = repairs


def _json_candidates(text: str, notes: _Notes) -> tuple[list[_Candidate], int | None]:
    """Every balanced ``{...}`` / ``[...]`` span in ``text`` that parses (after repairs), and
    where an answer-like JSON block starts that is never closed (None if there is none)."""
    candidates: list[_Candidate] = []
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
            candidates.append(_Candidate(position, value, repairs))
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


# --- choosing the answer's JSON ------------------------------------------------------------


def _norm_key(key: str) -> str:
    return re.sub(r"[\s\-]+", "_", key.strip().lower())


def _normalized(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {_norm_key(str(key)): value for key, value in mapping.items()}


def _kind(value: Any) -> str | None:
    """``findings`` or ``boxes`` when ``value`` has that shape; otherwise None."""
    if isinstance(value, dict):
        keys = _normalized(value)
        if "findings" in keys:
            return "findings"
        if "boxes" in keys and isinstance(keys["boxes"], list):
            return "boxes"
        return None
    if isinstance(value, list):
        if not value:
            return "boxes"  # an empty list is the focused prompt's "nothing found"
        if all(isinstance(item, dict) and "box_2d" in _normalized(item) for item in value):
            return "boxes"
        if all(
            isinstance(item, dict)
            and any(key in _normalized(item) for key in _DESCRIPTION_KEYS + _IMPRESSION_KEYS)
            for item in value
        ):
            return "findings"
    return None


def _is_template_echo(value: Any) -> bool:
    """True when every string is a ``<placeholder>``: the model echoed the prompt's schema."""
    strings = list(_strings_in(value))
    return bool(strings) and all(_PLACEHOLDER.match(item) for item in strings)


def _strings_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def _pick(candidates: list[_Candidate], kind: str, notes: _Notes) -> Any:
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


# --- reading the schema --------------------------------------------------------------------


def _read_findings_doc(
    doc: Any, notes: _Notes, slice_count: int | None
) -> tuple[list[ParsedFinding], str | None, list[Box]]:
    overall: str | None = None
    if isinstance(doc, list):
        notes.repair("findings list had no wrapping object")
        items: Any = doc
    else:
        keys = _normalized(doc)
        items = keys["findings"]
        for key in _OVERALL_KEYS:
            if key in keys and keys[key] is not None:
                overall = _text(keys[key], f"overall impression ({key})", notes)
                break
    findings: list[ParsedFinding] = []
    boxes: list[Box] = []
    if items is None:
        notes.problem("'findings' is null")
        return findings, overall, boxes
    if isinstance(items, str):
        notes.problem("'findings' is plain text, not a list; kept as one narrative finding")
        text = _clean(items)
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
            keys = _normalized(item)
            if "box_2d" in keys:
                label = finding.location or finding.description
                boxes.extend(
                    _read_boxes(
                        [{"box_2d": keys["box_2d"], "label": label}],
                        notes,
                        finding.index,
                        name=f"finding {position} box",
                    )
                )
    return findings, overall, boxes


def _first(keys: Mapping[str, Any], names: Iterable[str]) -> tuple[str, Any] | None:
    for name in names:
        if name in keys and keys[name] is not None:
            return name, keys[name]
    return None


def _read_finding(
    item: Any, position: int, index: int, notes: _Notes, slice_count: int | None
) -> ParsedFinding | None:
    where = f"finding {position}"
    if isinstance(item, str):
        text = _clean(item)
        if not text:
            notes.problem(f"{where} is empty and was dropped")
            return None
        notes.repair(f"{where} was plain text, read as its description")
        return ParsedFinding(index=index, description=text)
    if not isinstance(item, dict):
        notes.problem(f"{where} is a {type(item).__name__}, not an object; dropped")
        return None
    keys = _normalized(item)
    found = _first(keys, _DESCRIPTION_KEYS)
    description = _text(found[1], f"{where} description", notes) if found else None
    found = _first(keys, _IMPRESSION_KEYS)
    impression = _text(found[1], f"{where} impression", notes) if found else None
    found = _first(keys, _LOCATION_KEYS)
    location = _text(found[1], f"{where} location", notes) if found else None
    if not description:
        if not impression:
            notes.problem(f"{where} has no description or impression and was dropped")
            return None
        notes.repair(f"{where} has no description; its impression is used as the description")
        description = impression
    found = _first(keys, _CONFIDENCE_KEYS)
    confidence = _confidence_raw(found[1], where, notes) if found else None
    found = _first(keys, _MEASUREMENT_KEYS)
    measurements = _measurements(found[1], where, notes) if found else ()
    found = _first(keys, _SLICE_KEYS)
    slice_number = _slice(found[1], where, notes, slice_count) if found else None
    found = _first(keys, _CHANGE_KEYS)
    change = _change(found[1], where, notes) if found else None
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


def _clean(text: str) -> str:
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


def _text(value: Any, where: str, notes: _Notes) -> str | None:
    if isinstance(value, str):
        if _PLACEHOLDER.match(value):
            notes.problem(f"{where} is the prompt's placeholder {value.strip()!r}; ignored")
            return None
        return _clean(value) or None
    if isinstance(value, bool) or value is None:
        notes.problem(f"{where} is {value!r}, not text; ignored")
        return None
    if isinstance(value, int | float):
        notes.repair(f"{where} was a number, read as text")
        return str(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        notes.repair(f"{where} was a list of texts, joined")
        return _clean("; ".join(value)) or None
    notes.problem(f"{where} is a {type(value).__name__}, not text; ignored")
    return None


def _confidence_raw(value: Any, where: str, notes: _Notes) -> float | str | None:
    if isinstance(value, bool):
        notes.problem(f"{where} confidence is {value!r}; ignored")
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            notes.problem(f"{where} confidence is not finite; ignored")
            return None
        return float(value)
    if isinstance(value, str):
        return _clean(value) or None
    notes.problem(f"{where} confidence is a {type(value).__name__}; ignored")
    return None


def _number(value: Any) -> float | None:
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


def _measurements(value: Any, where: str, notes: _Notes) -> tuple[Measurement, ...]:
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
            text = _clean(item)
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
        keys = _normalized(item)
        name = _text(keys["name"], f"{label} name", notes) if keys.get("name") else None
        unit = _text(keys["unit"], f"{label} unit", notes) if keys.get("unit") else None
        raw = keys.get("value")
        if raw is None or isinstance(raw, bool) or (isinstance(raw, str) and not raw.strip()):
            notes.problem(f"{label} has no value and was dropped")
            continue
        number = _number(raw)
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
                result.append(Measurement(name=name, value=_clean(raw), unit=unit))
            continue
        notes.problem(f"{label} value is a {type(raw).__name__}; dropped")
    return tuple(result)


def _slice(value: Any, where: str, notes: _Notes, slice_count: int | None) -> int | None:
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


def _change(value: Any, where: str, notes: _Notes) -> IntervalChange | None:
    if isinstance(value, str):
        word = re.sub(r"\s+", " ", value.strip().lower().rstrip("."))
        if word in _CHANGE_WORDS:
            return _CHANGE_WORDS[word]
    notes.problem(f"{where} interval change {value!r} is not new/resolved/larger/smaller/stable")
    return None


def _box_items(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        boxes = _normalized(doc).get("boxes")
        return boxes if isinstance(boxes, list) else []
    return doc if isinstance(doc, list) else []


def _read_boxes(
    items: list[Any], notes: _Notes, finding_index: int | None, name: str | None = None
) -> list[Box]:
    boxes: list[Box] = []
    for position, item in enumerate(items, start=1):
        where = name or f"box {position}"
        if not isinstance(item, dict):
            notes.problem(f"{where} is a {type(item).__name__}; dropped")
            continue
        keys = _normalized(item)
        coords = keys.get("box_2d")
        numbers = [_number(value) for value in coords] if isinstance(coords, list) else []
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
        label = _text(label_value, f"{where} label", notes) if label_value is not None else None
        boxes.append(Box(y0=y0, x0=x0, y1=y1, x1=x1, label=label, finding_index=finding_index))
    return boxes


def _narrative(answer: str, notes: _Notes, expect: Expect) -> list[ParsedFinding]:
    """The fallback: the whole answer as one narrative finding, never more, never invented."""
    wanted = "findings JSON" if expect == "findings" else "box_2d JSON list"
    text = _clean(answer)
    if not text:
        notes.problem(f"the model gave no answer text (no {wanted})")
        return []
    notes.problem(f"no usable {wanted} in the answer; kept as one narrative finding")
    return [ParsedFinding(index=0, description=text, origin="narrative")]
