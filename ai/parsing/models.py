"""The typed result of parsing an answer, and the notes (repairs, problems) taken on the way."""

from __future__ import annotations

from typing import Literal

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


class Notes:
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
