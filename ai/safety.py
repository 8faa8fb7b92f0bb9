"""The safety layer: the only way model output leaves ``ai/``.

:func:`apply_safety` turns a :class:`~ai.parsing.ParsedAnswer` into a :class:`SafeAnalysis`:
every model text (description, location, impression, measurement names and values, box
labels, overall impression) goes through the one hedging classifier (:mod:`ai.hedging`), every
finding carries a confidence (:mod:`ai.confidence`), flags and parse problems become review
reasons, and the result always carries :data:`DISCLAIMER` and
``verification_flag = "UNVERIFIED"`` (IHE AI Results / DICOM Verification Flag (0040,A493)):
signing is done by a radiologist outside this package and creates a report version; nothing
here can mark model output verified.

:class:`SafeFinding`, :class:`SafeBox` and :class:`SafeAnalysis` can only be built inside
:func:`apply_safety`: constructing, validating, ``model_construct``-ing or ``model_copy``-ing
with updates anywhere else raises :class:`UnsafeConstructionError`. The model's original wording
is kept in ``audit_*`` fields for the audit trail; screens, reports and exports show the
hedged fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

from ai.confidence import ConfidenceAssessment, assess_confidence
from ai.hedging import HedgeChange, HedgeFlag, HedgeResult, hedge_text
from ai.parsing import Box, IntervalChange, Measurement, ParsedAnswer, ParsedFinding
from ai.units import ucum_code
from ai.urgency import CriticalList, UrgencyAssessment, assess, load_critical_list

__all__ = [
    "DISCLAIMER",
    "VERIFICATION_FLAG",
    "HedgeChange",
    "HedgeFlag",
    "HedgeResult",
    "OriginalWording",
    "SafeAnalysis",
    "SafeBox",
    "SafeFinding",
    "SafetyNote",
    "UnsafeConstructionError",
    "apply_safety",
    "hedge_text",
]

#: The decision-support disclaimer carried by every analysis result.
DISCLAIMER = (
    "AI-generated decision support. Not a diagnosis. Preliminary and UNVERIFIED until reviewed "
    "and signed by a radiologist."
)
#: Verification Flag of every AI result: only a radiologist's signature (outside ai/) changes it.
VERIFICATION_FLAG: Literal["UNVERIFIED"] = "UNVERIFIED"

_MINTING: ContextVar[bool] = ContextVar("ai_safety_minting", default=False)


class UnsafeConstructionError(TypeError):
    """A safe result was built outside :func:`apply_safety`."""


@contextmanager
def _minting() -> Iterator[None]:
    token = _MINTING.set(True)
    try:
        yield
    finally:
        _MINTING.reset(token)


class _Minted(BaseModel):
    """Frozen model that only :func:`apply_safety` can create."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _only_through_apply_safety(cls, data: Any) -> Any:
        if not _MINTING.get():
            raise UnsafeConstructionError(
                f"{cls.__name__} is built only by ai.safety.apply_safety()"
            )
        return data

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:
        """Refused: it would skip the safety layer."""
        raise UnsafeConstructionError(f"{cls.__name__}.model_construct bypasses apply_safety()")

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A plain copy; a copy with ``update`` is refused (it would skip validation)."""
        if update:
            raise UnsafeConstructionError(
                f"{type(self).__name__}.model_copy(update=...) bypasses apply_safety()"
            )
        return super().model_copy(deep=deep)


class OriginalWording(BaseModel):
    """The model's own, unhedged wording of a finding: for the audit trail only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    location: str | None = None
    impression: str | None = None
    measurement_names: tuple[str | None, ...] = ()


class SafetyNote(BaseModel):
    """Something the safety layer changed or could not accept besides wording: a unit that is
    not on the closed UCUM list (the number is kept without it), or a confidence outside 0..1
    (the value it was replaced by)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["unit_not_recognised", "confidence_out_of_range"]
    original: str
    replacement: str | None = None

    def reason_text(self) -> str:
        if self.kind == "unit_not_recognised":
            return f"unit {self.original!r} not recognised: the number is kept without a unit"
        return f"confidence {self.original} out of range 0..1, replaced by {self.replacement}"


class SafeFinding(_Minted):
    """A finding fit to show: hedged wording, a confidence, flags; original kept for audit."""

    index: int
    description: str
    location: str | None
    impression: str | None
    measurements: tuple[Measurement, ...]
    slice: int | None
    interval_change: IntervalChange | None
    origin: Literal["json", "narrative"]
    confidence: ConfidenceAssessment
    changes: tuple[HedgeChange, ...]
    flags: tuple[HedgeFlag, ...]
    notes: tuple[SafetyNote, ...] = ()
    audit_original: OriginalWording

    def display_line(self) -> str:
        """One line for a screen, a report or an export, always with its confidence."""
        parts = [self.description]
        if self.location:
            parts.append(f"location: {self.location}")
        if self.impression and self.impression != self.description:
            parts.append(f"impression: {self.impression}")
        for item in self.measurements:
            value = f"{item.value:g}" if isinstance(item.value, float) else item.value
            unit = f" {item.unit}" if item.unit else ""
            parts.append(f"{item.name or 'measurement'}: {value}{unit}")
        if self.slice is not None:
            parts.append(f"slice {self.slice}")
        if self.interval_change is not None:
            parts.append(f"interval change: {self.interval_change}")
        parts.append(f"confidence {self.confidence.label()}")
        if self.flags:
            parts.append(f"{len(self.flags)} wording flag(s) for review")
        return " | ".join(parts)


class SafeBox(_Minted):
    """A localization box (0..1000 of the padded square image) with a hedged label."""

    y0: float
    x0: float
    y1: float
    x1: float
    label: str | None
    finding_index: int | None
    changes: tuple[HedgeChange, ...]
    flags: tuple[HedgeFlag, ...]
    audit_original_label: str | None


class SafeAnalysis(_Minted):
    """One model answer after the safety layer: the only form model output leaves ``ai/`` in."""

    findings: tuple[SafeFinding, ...]
    overall_impression: str | None
    overall_changes: tuple[HedgeChange, ...]
    overall_flags: tuple[HedgeFlag, ...]
    boxes: tuple[SafeBox, ...]
    needs_review: bool
    review_reasons: tuple[str, ...]
    repairs: tuple[str, ...]
    thinking_stripped: bool
    disclaimer: str
    verification_flag: Literal["UNVERIFIED"]
    audit_original_overall_impression: str | None
    audit_model_answer: str
    #: Study-level urgency (ai.urgency): the model's (reason hedged) or the critical list's.
    urgency: UrgencyAssessment | None = None

    @model_validator(mode="after")
    def _always_disclaimed(self) -> SafeAnalysis:
        if self.disclaimer != DISCLAIMER:
            raise ValueError("a safe analysis carries the standard disclaimer")
        return self

    def render_text(self) -> str:
        """Plain text for a screen or report: disclaimer and flag first, then the findings."""
        lines = [self.disclaimer, f"Verification: {self.verification_flag}"]
        if self.needs_review:
            lines.append("Needs review: " + " | ".join(self.review_reasons))
        if self.findings:
            lines.extend(f"{i}. {f.display_line()}" for i, f in enumerate(self.findings, 1))
        else:
            lines.append("No findings stated by the model.")
        if self.overall_impression:
            lines.append(f"Overall impression: {self.overall_impression}")
        return "\n".join(lines)


def _hedge(text: str | None) -> HedgeResult | None:
    return hedge_text(text) if text else None


def _safe_finding(finding: ParsedFinding, parse_repaired: bool) -> SafeFinding:
    description = hedge_text(finding.description)
    location = _hedge(finding.location)
    impression = _hedge(finding.impression)
    changes = list(description.changes)
    flags = list(description.flags)
    for result in (location, impression):
        if result is not None:
            changes.extend(result.changes)
            flags.extend(result.flags)
    measurements: list[Measurement] = []
    notes: list[SafetyNote] = []
    for item in finding.measurements:
        name = _hedge(item.name)
        value = hedge_text(item.value) if isinstance(item.value, str) else None
        if name is not None:
            changes.extend(name.changes)
            flags.extend(name.flags)
        if value is not None:
            changes.extend(value.changes)
            flags.extend(value.flags)
        unit = ucum_code(item.unit) if item.unit else None
        if item.unit and unit is None:
            notes.append(SafetyNote(kind="unit_not_recognised", original=item.unit[:40]))
        measurements.append(
            Measurement(
                name=name.text if name is not None else None,
                value=value.text if value is not None else item.value,
                unit=unit,
            )
        )
    own_words = " ".join(text for text in (finding.description, finding.impression) if text)
    confidence = assess_confidence(
        finding.confidence_raw,
        original_text=own_words,
        parse_repaired=parse_repaired,
        narrative=finding.origin == "narrative",
    )
    if _out_of_range(confidence):
        notes.append(
            SafetyNote(
                kind="confidence_out_of_range",
                original=str(confidence.model_raw),
                replacement=f"{confidence.value:.2f}",
            )
        )
    return SafeFinding(
        index=finding.index,
        description=description.text,
        location=location.text if location is not None else None,
        impression=impression.text if impression is not None else None,
        measurements=tuple(measurements),
        slice=finding.slice,
        interval_change=finding.interval_change,
        origin=finding.origin,
        confidence=confidence,
        changes=tuple(changes),
        flags=tuple(flags),
        notes=tuple(notes),
        audit_original=OriginalWording(
            description=finding.description,
            location=finding.location,
            impression=finding.impression,
            measurement_names=tuple(item.name for item in finding.measurements),
        ),
    )


def _out_of_range(confidence: ConfidenceAssessment) -> bool:
    """The model gave a bare number outside 0..1 (not "85%"): it was reinterpreted."""
    raw = (confidence.model_raw or "").strip()
    if not confidence.given_by_model or not raw or raw.endswith("%"):
        return False
    try:
        number = float(raw.replace(",", "."))
    except ValueError:
        return False
    return not 0.0 <= number <= 1.0


def _safe_box(box: Box) -> SafeBox:
    label = _hedge(box.label)
    return SafeBox(
        y0=box.y0,
        x0=box.x0,
        y1=box.y1,
        x1=box.x1,
        label=label.text if label is not None else None,
        finding_index=box.finding_index,
        changes=label.changes if label is not None else (),
        flags=label.flags if label is not None else (),
        audit_original_label=box.label,
    )


def _flag_reason_text(where: str, flag: HedgeFlag) -> str:
    return f"{where}: '{flag.phrase}' left as written ({flag.reason}: {flag.detail})"


def _urgency(
    parsed: ParsedAnswer,
    findings: tuple[SafeFinding, ...],
    overall: str | None,
    critical: CriticalList | None,
) -> UrgencyAssessment:
    reason = _hedge(parsed.urgency_reason)
    texts: list[tuple[str, str]] = []
    for position, finding in enumerate(findings, start=1):
        words = " ".join(t for t in (finding.description, finding.impression) if t)
        texts.append((f"finding {position}", words))
    if overall:
        texts.append(("overall impression", overall))
    return assess(
        parsed.urgency,
        reason.text if reason is not None else None,
        parsed.urgency_flag,
        texts,
        critical or load_critical_list(),
    )


def apply_safety(parsed: ParsedAnswer, critical: CriticalList | None = None) -> SafeAnalysis:
    """Hedge, score, flag and disclaim one parsed answer, and assess its urgency against
    ``critical`` (the packaged critical findings list when None)."""
    parse_repaired = bool(parsed.repairs or parsed.problems)
    with _minting():
        findings = tuple(_safe_finding(item, parse_repaired) for item in parsed.findings)
        boxes = tuple(_safe_box(item) for item in parsed.boxes)
        overall = _hedge(parsed.overall_impression)
        reasons = list(parsed.problems)
        for position, finding in enumerate(findings, start=1):
            reasons.extend(_flag_reason_text(f"finding {position}", f) for f in finding.flags)
            reasons.extend(f"finding {position}: {n.reason_text()}" for n in finding.notes)
        if overall is not None:
            reasons.extend(_flag_reason_text("overall impression", f) for f in overall.flags)
        for position, box in enumerate(boxes, start=1):
            reasons.extend(_flag_reason_text(f"box {position} label", f) for f in box.flags)
        return SafeAnalysis(
            findings=findings,
            overall_impression=overall.text if overall is not None else None,
            overall_changes=overall.changes if overall is not None else (),
            overall_flags=overall.flags if overall is not None else (),
            boxes=boxes,
            needs_review=parsed.needs_review or bool(reasons),
            review_reasons=tuple(reasons),
            repairs=parsed.repairs,
            thinking_stripped=parsed.thinking_stripped,
            disclaimer=DISCLAIMER,
            verification_flag=VERIFICATION_FLAG,
            audit_original_overall_impression=parsed.overall_impression,
            audit_model_answer=parsed.answer_text,
            urgency=_urgency(
                parsed, findings, overall.text if overall is not None else None, critical
            ),
        )
