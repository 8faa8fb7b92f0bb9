"""ai.safety: confidence formula, disclaimer, UNVERIFIED, minting guard, every text hedged.

The hedging classifier itself and its corpora are tested in test_ai_hedging.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from ai.confidence import (
    DEFAULT_CONFIDENCE,
    HEAVY_HEDGE_FACTOR,
    LIGHT_HEDGE_FACTOR,
    NARRATIVE_CAP,
    REPAIR_FACTOR,
    assess_confidence,
    normalize_model_confidence,
)
from ai.parsing import ParsedAnswer, ParsedFinding, parse_answer
from ai.safety import (
    DISCLAIMER,
    SafeAnalysis,
    SafeBox,
    SafeFinding,
    UnsafeConstructionError,
    apply_safety,
)

ANSWER = """<unused94>thought
Need JSON.<unused95>```json
{
  "findings": [
    {"description": "Large left pneumothorax, definitely under tension.",
     "location": "left hemithorax", "impression": "This is a tension pneumothorax.",
     "confidence": 0.95, "slice": 3},
    {"description": "Right lower lobe nodule; malignancy cannot be excluded.",
     "impression": "The nodule is malignant.", "confidence": "80%"},
    {"description": "No pleural effusion is definitely seen.", "confidence": "moderate"}
  ],
  "overall_impression": "Findings confirm a tension pneumothorax."
}
```"""


# --- confidence ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value", "kind"),
    [
        (0.8, 0.8, "fraction"),
        (1, 1.0, "fraction"),
        (0, 0.0, "fraction"),
        (80, 0.8, "percent"),
        (100, 1.0, "percent"),
        ("0.65", 0.65, "fraction"),
        ("85%", 0.85, "percent"),
        ("85 percent", 0.85, "percent"),
        ("45", 0.45, "percent"),
        ("High", 0.8, "word"),
        ("very high confidence", 0.9, "word"),
        ("Confidence: moderate", 0.6, "word"),
        ("low", 0.3, "word"),
        (-0.2, 0.0, "fraction"),
        (250, 1.0, "percent"),
        (None, None, "missing"),
        ("banana", None, "unusable"),
    ],
)
def test_model_confidence_is_normalized_and_clamped(
    raw: float | str | None, value: float | None, kind: str
) -> None:
    normalized = normalize_model_confidence(raw)
    assert normalized.value == (pytest.approx(value) if value is not None else None)
    assert normalized.kind == kind
    if normalized.value is not None:
        assert 0.0 <= normalized.value <= 1.0


def test_confidence_formula() -> None:
    plain = assess_confidence(
        0.9, original_text="Left apical pneumothorax.", parse_repaired=False, narrative=False
    )
    assert plain.value == 0.9
    assert plain.given_by_model is True
    assert plain.factors == ()

    light = assess_confidence(
        0.9, original_text="Possibly a rib fracture.", parse_repaired=False, narrative=False
    )
    assert light.value == round(0.9 * LIGHT_HEDGE_FACTOR, 2)

    heavy = assess_confidence(
        0.9, original_text="Malignancy cannot be excluded.", parse_repaired=False, narrative=False
    )
    assert heavy.value == round(0.9 * HEAVY_HEDGE_FACTOR, 2)

    repaired = assess_confidence(
        0.9, original_text="May represent atelectasis.", parse_repaired=True, narrative=False
    )
    assert repaired.value == round(0.9 * LIGHT_HEDGE_FACTOR * REPAIR_FACTOR, 2)
    assert any("parse repaired" in factor for factor in repaired.factors)

    missing = assess_confidence(
        None, original_text="Mild cardiomegaly.", parse_repaired=False, narrative=False
    )
    assert missing.value == DEFAULT_CONFIDENCE
    assert missing.given_by_model is False
    assert "not given by the model" in missing.label()

    narrative = assess_confidence(0.99, original_text="Text.", parse_repaired=True, narrative=True)
    assert narrative.value == NARRATIVE_CAP


def test_confidence_is_never_raised_and_stays_in_range() -> None:
    texts = ["Pneumothorax.", "Possibly pneumothorax.", "Pneumothorax cannot be excluded."]
    for raw in (-5, 0, 0.3, 0.77, 1, 55, 100, 1000, "very high", "low", None, "??"):
        for text in texts:
            for repaired in (False, True):
                result = assess_confidence(
                    raw, original_text=text, parse_repaired=repaired, narrative=False
                )
                base = normalize_model_confidence(raw).value
                ceiling = DEFAULT_CONFIDENCE if base is None else base
                assert 0.0 <= result.value <= ceiling + 1e-9


# --- apply_safety ----------------------------------------------------------------------------


def test_apply_safety_hedges_and_keeps_the_original_for_audit() -> None:
    safe = apply_safety(parse_answer(ANSWER, slice_count=10))
    first, second, third = safe.findings
    assert first.description == "Findings suggestive of large left pneumothorax, under tension."
    assert first.audit_original.description == "Large left pneumothorax, definitely under tension."
    assert first.impression == "This may be a tension pneumothorax."
    assert first.audit_original.impression == "This is a tension pneumothorax."
    assert [(c.original, c.replacement) for c in first.changes] == [
        (
            "Large left pneumothorax, definitely under tension.",
            "Findings suggestive of large left pneumothorax, under tension.",
        ),
        ("This is a tension pneumothorax.", "This may be a tension pneumothorax."),
    ]
    assert second.description == "Right lower lobe nodule; malignancy cannot be excluded."
    assert second.impression == "The nodule may be malignant."
    assert second.audit_original.impression == "The nodule is malignant."
    assert third.description == "No pleural effusion is definitely seen."
    assert third.flags == () and third.changes == ()
    assert safe.overall_impression == "Findings suggest a tension pneumothorax."
    assert safe.audit_original_overall_impression == "Findings confirm a tension pneumothorax."
    assert safe.thinking_stripped is True


def test_apply_safety_confidences_follow_the_formula() -> None:
    safe = apply_safety(parse_answer(ANSWER, slice_count=10))
    first, second, third = (f.confidence for f in safe.findings)
    # The model's own "definitely" is not a hedge: its 0.95 stands.
    assert first.value == 0.95
    # "cannot be excluded" in the model's own wording: x0.7.
    assert second.value == round(0.8 * HEAVY_HEDGE_FACTOR, 2)
    assert third.value == 0.6


def test_flags_make_the_analysis_need_review_with_reasons() -> None:
    answer = json.dumps({"findings": [{"description": 'Reported as "pneumonia".'}]})
    safe = apply_safety(parse_answer(answer, slice_count=10))
    assert safe.needs_review is True
    assert any("pneumonia" in reason and "quotation" in reason for reason in safe.review_reasons)


@pytest.mark.parametrize(
    "answer",
    [
        ANSWER,
        '{"findings": [], "overall_impression": "No acute abnormality."}',
        "The lungs are clear.",
        "",
        '[{"box_2d": [1, 2, 3, 4], "label": "definitely a nodule"}]',
    ],
    ids=["findings", "empty", "narrative", "nothing", "boxes"],
)
def test_every_analysis_carries_disclaimer_and_unverified(answer: str) -> None:
    safe = apply_safety(parse_answer(answer))
    assert safe.disclaimer == DISCLAIMER
    assert safe.verification_flag == "UNVERIFIED"
    text = safe.render_text()
    assert text.startswith(DISCLAIMER)
    assert "UNVERIFIED" in text
    dumped = safe.model_dump()
    assert dumped["disclaimer"] == DISCLAIMER
    assert dumped["verification_flag"] == "UNVERIFIED"


def test_confidence_is_shown_with_every_finding() -> None:
    safe = apply_safety(parse_answer(ANSWER, slice_count=10))
    text = safe.render_text()
    for finding in safe.findings:
        line = finding.display_line()
        assert f"confidence {finding.confidence.value:.2f}" in line
        assert line in text


def test_box_labels_are_hedged() -> None:
    safe = apply_safety(
        parse_answer(
            '[{"box_2d": [1, 2, 3, 4], "label": "definitely a meningioma"},'
            ' {"box_2d": [5, 6, 7, 8], "label": "nodule"}]',
            expect="boxes",
        )
    )
    disorder, observation = safe.boxes
    assert disorder.label == "findings suggestive of a meningioma"
    assert disorder.audit_original_label == "definitely a meningioma"
    assert observation.label == "nodule"


def test_empty_findings_stay_empty_after_safety() -> None:
    safe = apply_safety(parse_answer('{"findings": []}'))
    assert safe.findings == ()
    assert "No findings stated by the model." in safe.render_text()


def test_narrative_finding_is_low_confidence_and_needs_review() -> None:
    parsed = ParsedAnswer(
        findings=(
            ParsedFinding(
                index=0,
                description="It is definitely pneumonia.",
                confidence_raw=0.99,
                origin="narrative",
            ),
        ),
        needs_review=True,
        problems=("no usable findings JSON in the answer; kept as one narrative finding",),
    )
    safe = apply_safety(parsed)
    assert safe.findings[0].confidence.value <= NARRATIVE_CAP
    assert safe.findings[0].description == "It may be pneumonia."
    assert safe.needs_review is True


# --- nothing safe is built outside apply_safety ----------------------------------------------


def _valid_finding_fields() -> dict[str, Any]:
    safe = apply_safety(parse_answer('{"findings": [{"description": "Nodule"}]}'))
    return safe.findings[0].model_dump()


def test_safe_finding_cannot_be_constructed_directly() -> None:
    fields = _valid_finding_fields()
    with pytest.raises(UnsafeConstructionError):
        SafeFinding(**fields)
    with pytest.raises(UnsafeConstructionError):
        SafeFinding.model_validate(fields)
    with pytest.raises(UnsafeConstructionError):
        SafeFinding.model_validate_json(json.dumps(fields))
    with pytest.raises(UnsafeConstructionError):
        SafeFinding.model_construct(**fields)


def test_safe_finding_cannot_be_edited_or_copied_with_changes() -> None:
    safe = apply_safety(parse_answer('{"findings": [{"description": "Nodule is malignant"}]}'))
    finding = safe.findings[0]
    with pytest.raises(ValidationError):
        finding.description = "The nodule is malignant."
    with pytest.raises(UnsafeConstructionError):
        finding.model_copy(update={"description": "The nodule is malignant."})
    assert finding.model_copy() == finding


def test_safe_analysis_and_box_cannot_be_constructed_directly() -> None:
    safe = apply_safety(parse_answer('[{"box_2d": [1, 2, 3, 4], "label": "x"}]', expect="boxes"))
    with pytest.raises(UnsafeConstructionError):
        SafeAnalysis.model_validate(safe.model_dump())
    with pytest.raises(UnsafeConstructionError):
        SafeBox(**safe.boxes[0].model_dump())
    with pytest.raises(UnsafeConstructionError):
        safe.model_copy(update={"verification_flag": "VERIFIED"})
    with pytest.raises(ValidationError):
        safe.verification_flag = "VERIFIED"  # type: ignore[assignment]


def test_minting_does_not_leak_out_of_apply_safety() -> None:
    apply_safety(parse_answer('{"findings": [{"description": "Nodule"}]}'))
    with pytest.raises(UnsafeConstructionError):
        SafeFinding(**_valid_finding_fields())


@pytest.mark.parametrize(
    ("impression", "expected"),
    [
        ("Malignant brain tumour.", "Findings suggestive of malignant brain tumour."),
        ("Acute intracranial hemorrhage.", "Findings suggestive of acute intracranial hemorrhage."),
        (
            "There is a glioma in the left temporal lobe.",
            "There may be a glioma in the left temporal lobe.",
        ),
        ("Possible early pneumonia.", "Possible early pneumonia."),
        ("No acute intracranial abnormality.", "No acute intracranial abnormality."),
        (
            "Right lower lobe pneumonia. Small effusion cannot be excluded.",
            "Findings suggestive of right lower lobe pneumonia. Small effusion cannot be excluded.",
        ),
    ],
)
def test_an_impression_goes_through_the_same_classifier(impression: str, expected: str) -> None:
    safe = apply_safety(
        parse_answer(json.dumps({"findings": [], "overall_impression": impression}))
    )
    assert safe.overall_impression == expected
    assert safe.overall_flags == ()


def test_the_overall_impression_never_reaches_a_screen_unhedged() -> None:
    answer = json.dumps(
        {
            "findings": [
                {
                    "description": "Hyperdense lesion.",
                    "impression": "Glioblastoma.",
                    "confidence": 0.8,
                }
            ],
            "overall_impression": "Malignant brain tumour.",
        }
    )
    safe = apply_safety(parse_answer(answer, slice_count=10))
    assert safe.overall_impression == "Findings suggestive of malignant brain tumour."
    assert safe.findings[0].impression == "Findings suggestive of glioblastoma."
    assert safe.audit_original_overall_impression == "Malignant brain tumour."
    flagged = apply_safety(
        parse_answer(json.dumps({"findings": [], "overall_impression": 'It was called "glioma".'}))
    )
    assert flagged.overall_impression == 'It was called "glioma".'
    assert flagged.needs_review
    assert any("quotation" in reason for reason in flagged.review_reasons)


def test_units_off_the_closed_list_and_confidences_out_of_range_are_flagged() -> None:
    answer = (
        '```json\n{"findings": [{"location": "left temporal lobe", "description": '
        '"Glioblastoma.", "confidence": 1.7, "measurements": [{"name": "long axis", '
        '"value": 3, "unit": "furlongs"}, {"name": "density", "value": 40, "unit": "HU"}]}],'
        ' "overall_impression": "It was called \\"glioma\\"."}\n```'
    )
    safe = apply_safety(parse_answer(answer))
    (finding,) = safe.findings
    assert [m.unit for m in finding.measurements] == [None, "[hnsf'U]"]
    assert [(n.kind, n.original, n.replacement) for n in finding.notes] == [
        ("unit_not_recognised", "furlongs", None),
        ("confidence_out_of_range", "1.7", "0.02"),
    ]
    assert finding.confidence.value == pytest.approx(0.02)
    assert any("unit 'furlongs' not recognised" in r for r in safe.review_reasons)
    assert any(
        "confidence 1.7 out of range 0..1, replaced by 0.02" in r for r in safe.review_reasons
    )
    assert safe.needs_review
    assert [f.reason for f in safe.overall_flags] == ["quotation"]  # cannot be hedged
