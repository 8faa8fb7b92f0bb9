"""Confidence of a finding: the model's own value, normalized, then lowered, never raised.

Formula (every factor is recorded in ``ConfidenceAssessment.factors``)::

    base  = the model's value mapped to 0..1        (given_by_model = True)
            number 0..1 -> as is; number 1..100 -> percent / 100; below 0 or above 100 ->
            clamped to 0 or 1; "85%" -> 0.85; words -> WORD_CONFIDENCE ("high" -> 0.8)
          | DEFAULT_CONFIDENCE = 0.5 when missing or unusable (given_by_model = False)
    hedge = HEAVY_HEDGE_FACTOR 0.7 when the model's own wording hedges heavily
            ("cannot exclude", "indeterminate", "equivocal", ...),
            else LIGHT_HEDGE_FACTOR 0.85 when it says "possibly", "may", "might", "could", ...,
            else 1.0
    parse = REPAIR_FACTOR 0.8 when the parser repaired the answer or found problems, else 1.0
    value = round(clamp(base * hedge * parse, 0, 1), 2)
    value = min(value, NARRATIVE_CAP) for the narrative fallback finding (0.3)

The hedge is read from the model's original wording, not from the safety layer's rewrite:
our hedging says nothing about how sure the model was.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

#: Used when the model gave no usable confidence; shown as "not given by the model".
DEFAULT_CONFIDENCE = 0.5
#: Multiplier when the finding's wording hedges heavily ("cannot exclude", "indeterminate").
HEAVY_HEDGE_FACTOR = 0.7
#: Multiplier when the finding's wording hedges ("possibly", "may", "might", "could").
LIGHT_HEDGE_FACTOR = 0.85
#: Multiplier when the answer needed a parse repair or had a parse problem.
REPAIR_FACTOR = 0.8
#: Ceiling for the single finding kept from an answer without usable JSON.
NARRATIVE_CAP = 0.3

#: Confidence words mapped to values (longest phrase wins).
WORD_CONFIDENCE: dict[str, float] = {
    "very high": 0.9,
    "high": 0.8,
    "moderate to high": 0.7,
    "moderately high": 0.7,
    "moderate": 0.6,
    "medium": 0.6,
    "intermediate": 0.5,
    "low to moderate": 0.4,
    "moderately low": 0.4,
    "low": 0.3,
    "very low": 0.15,
}

_HEAVY_HEDGES = re.compile(
    r"\b(?:cannot|can't|can\s+not|could\s+not|not)\s+(?:be\s+)?(?:entirely\s+|completely\s+|"
    r"fully\s+)?(?:exclude[sd]?|ruled?\s+out)\b|\bnot\s+(?:entirely\s+)?excluded\b|"
    r"\bdifficult\s+to\s+(?:exclude|assess|evaluate)\b|\bindeterminate\b|\bequivocal\b|"
    r"\bquestionabl[ey]\b|\buncertain\b|\bunclear\b|\bnot\s+certain\b",
    re.IGNORECASE,
)
_LIGHT_HEDGES = re.compile(
    r"\b(?:possibly|possible|may|might|could|perhaps|conceivably)\b", re.IGNORECASE
)
_LEADING_NUMBER = re.compile(r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*(%|percent\b)?")

ConfidenceKind = Literal["fraction", "percent", "word", "missing", "unusable"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfidence(_Frozen):
    """The model's confidence mapped to 0..1 (``value`` None when missing or unusable)."""

    value: float | None
    kind: ConfidenceKind
    raw: str | None = None
    note: str | None = None


class ConfidenceAssessment(_Frozen):
    """A finding's confidence: the final ``value`` and how it was reached."""

    value: float
    given_by_model: bool
    model_value: float | None
    model_raw: str | None
    factors: tuple[str, ...] = ()

    def label(self) -> str:
        """A short text to show next to the finding, e.g. ``0.56 (model 0.80; hedged x0.7)``."""
        source = (
            f"model {self.model_value:.2f}"
            if self.given_by_model and self.model_value is not None
            else "not given by the model"
        )
        details = "; ".join((source, *self.factors))
        return f"{self.value:.2f} ({details})"


def normalize_model_confidence(raw: float | str | None) -> ModelConfidence:
    """Map the model's confidence (fraction, percent, "85%", "high") to 0..1."""
    if raw is None:
        return ModelConfidence(value=None, kind="missing")
    shown = str(raw)
    if isinstance(raw, bool):
        return ModelConfidence(value=None, kind="unusable", raw=shown, note="not a number")
    if isinstance(raw, int | float):
        return _from_number(float(raw), shown, percent_sign=False)
    text = raw.strip().lower()
    match = _LEADING_NUMBER.match(text)
    if match:
        number = float(match.group(1).replace(",", "."))
        return _from_number(number, shown, percent_sign=match.group(2) is not None)
    words = re.sub(r"[^a-z ]+", " ", text.replace("confidence", " "))
    words = re.sub(r"\s+", " ", words).strip()
    for phrase in sorted(WORD_CONFIDENCE, key=len, reverse=True):
        if re.search(rf"\b{phrase}\b", words):
            return ModelConfidence(value=WORD_CONFIDENCE[phrase], kind="word", raw=shown)
    return ModelConfidence(value=None, kind="unusable", raw=shown, note="not understood")


def _from_number(number: float, shown: str, *, percent_sign: bool) -> ModelConfidence:
    if not math.isfinite(number):
        return ModelConfidence(value=None, kind="unusable", raw=shown, note="not finite")
    if percent_sign or number > 1.0:
        value = number / 100.0
        kind: ConfidenceKind = "percent"
    else:
        value = number
        kind = "fraction"
    note = None
    if value < 0.0:
        value, note = 0.0, "below 0, clamped to 0"
    elif value > 1.0:
        value, note = 1.0, "above 100%, clamped to 1"
    return ModelConfidence(value=value, kind=kind, raw=shown, note=note)


def hedge_factor(original_text: str) -> tuple[float, str | None]:
    """The multiplier for the model's own hedging, with its reason."""
    heavy = _HEAVY_HEDGES.search(original_text)
    if heavy:
        return HEAVY_HEDGE_FACTOR, f"'{heavy.group(0)}' x{HEAVY_HEDGE_FACTOR}"
    light = _LIGHT_HEDGES.search(original_text)
    if light:
        return LIGHT_HEDGE_FACTOR, f"'{light.group(0)}' x{LIGHT_HEDGE_FACTOR}"
    return 1.0, None


def assess_confidence(
    raw: float | str | None,
    *,
    original_text: str,
    parse_repaired: bool,
    narrative: bool,
) -> ConfidenceAssessment:
    """Apply the module's formula to one finding."""
    model = normalize_model_confidence(raw)
    factors: list[str] = []
    if model.note:
        factors.append(f"model value {model.note}")
    if model.value is None:
        base = DEFAULT_CONFIDENCE
        if model.kind == "unusable":
            factors.append(f"model value {model.raw!r} unusable, default {DEFAULT_CONFIDENCE}")
        else:
            factors.append(f"default {DEFAULT_CONFIDENCE}")
    else:
        base = model.value
    value = base
    hedge, reason = hedge_factor(original_text)
    if reason:
        value *= hedge
        factors.append(f"hedged wording {reason}")
    if parse_repaired:
        value *= REPAIR_FACTOR
        factors.append(f"parse repaired x{REPAIR_FACTOR}")
    value = round(min(max(value, 0.0), 1.0), 2)
    if narrative and value > NARRATIVE_CAP:
        value = NARRATIVE_CAP
        factors.append(f"narrative answer, capped at {NARRATIVE_CAP}")
    return ConfidenceAssessment(
        value=value,
        given_by_model=model.value is not None,
        model_value=model.value,
        model_raw=model.raw,
        factors=tuple(factors),
    )
