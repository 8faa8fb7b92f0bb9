"""ai.parsing on realistic MedGemma 1.5 answers: thinking traces, fenced JSON, repairs, fallback."""

from __future__ import annotations

import pytest

from ai.parsing import ParsedAnswer, ParsedFinding, parse_answer, strip_thinking
from ai.safety import apply_safety

# A CT chest answer as MedGemma 1.5 writes it when it thinks first: the thinking trace (which
# even holds a draft JSON), the end marker, prose, then the fenced JSON with definitive wording
# and a box on the finding.
THINKING_ANSWER = """<unused94>thought
The user wants findings for a CT chest. Let me look at the slices. SLICE 14 shows a spiculated
nodule in the right upper lobe. Draft: {"findings": [{"description": "draft nodule"}]}
I should output JSON with findings and an overall impression.<unused95>Here is my analysis.

```json
{
  "findings": [
    {
      "description": "Spiculated nodule in the right upper lobe, definitely malignant.",
      "location": "right upper lobe, apical segment",
      "impression": "This is cancer.",
      "confidence": 0.85,
      "measurements": [{"name": "long axis diameter", "value": 18, "unit": "mm"}],
      "slice": 14,
      "box_2d": [212, 301, 288, 377]
    },
    {
      "description": "Small right pleural effusion.",
      "location": "right pleural space",
      "impression": "May represent a reactive effusion.",
      "confidence": "high",
      "measurements": [],
      "slice": 30
    }
  ],
  "overall_impression": "Findings confirm the diagnosis of lung cancer."
}
```"""

# Trailing commas, a // comment and typographic quotes around keys: all repairable.
BROKEN_JSON_ANSWER = """Sure. Based on the slices provided:
```json
{
  \u201cfindings\u201d: [
    {"description": "Consolidation in the left lower lobe", "location": "left lower lobe",
     "impression": "Consistent with pneumonia", "confidence": 70, "slice": "SLICE 22",},
    // the effusion
    {"description": "Trace left pleural effusion", "confidence": "40%",},
  ],
  "overall_impression": "Left lower lobe pneumonia with a trace effusion.",
}
```"""

NARRATIVE_ANSWER = (
    "The chest radiograph shows a right upper lobe opacity, which may represent pneumonia. "
    "There is no pneumothorax. Clinical correlation is recommended."
)

EMPTY_FINDINGS_ANSWER = """```json
{"findings": [], "overall_impression": "No acute cardiopulmonary abnormality."}
```"""

# The focused (localization) answer in the format of Google's CXR localization notebook.
FOCUSED_ANSWER = """<unused94>thought
The right sternoclavicular joint is at the top of the image, left of the midline from the
viewer's side.<unused95>The right sternoclavicular joint is located at the medial end of the
right clavicle.
Final Answer: ```json
[{"box_2d": [180, 402, 262, 488], "label": "right sternoclavicular joint"}]
```"""


def test_thinking_trace_is_stripped_and_its_draft_never_used() -> None:
    parsed = parse_answer(THINKING_ANSWER, slice_count=40)
    assert parsed.thinking_stripped is True
    assert "<unused9" not in parsed.answer_text
    assert "The user wants" not in parsed.answer_text
    assert [f.description for f in parsed.findings] == [
        "Spiculated nodule in the right upper lobe, definitely malignant.",
        "Small right pleural effusion.",
    ]
    assert all("draft" not in f.description for f in parsed.findings)
    assert parsed.needs_review is False
    assert parsed.problems == ()
    assert parsed.repairs == ()


def test_primary_schema_is_read_field_by_field() -> None:
    parsed = parse_answer(THINKING_ANSWER, slice_count=40)
    first, second = parsed.findings
    assert first.location == "right upper lobe, apical segment"
    assert first.impression == "This is cancer."
    assert first.confidence_raw == 0.85
    assert first.slice == 14
    assert [(m.name, m.value, m.unit) for m in first.measurements] == [
        ("long axis diameter", 18.0, "mm")
    ]
    assert second.confidence_raw == "high"
    assert second.measurements == ()
    assert parsed.overall_impression == "Findings confirm the diagnosis of lung cancer."
    # The finding's own box_2d is kept, tied to the finding.
    assert len(parsed.boxes) == 1
    box = parsed.boxes[0]
    assert (box.y0, box.x0, box.y1, box.x1) == (212, 301, 288, 377)
    assert box.finding_index == 0


def test_strip_thinking_keeps_only_what_follows_the_last_end_marker() -> None:
    text = "<unused94>thought\nfirst<unused95>middle<unused95>  the answer"
    split = strip_thinking(text)
    assert split.stripped is True
    assert split.answer == "  the answer"
    assert split.problem is None


def test_strip_thinking_without_markers_is_a_no_op() -> None:
    split = strip_thinking("plain answer")
    assert (split.answer, split.stripped, split.problem) == ("plain answer", False, None)


def test_unterminated_thinking_uses_the_final_answer_and_asks_for_review() -> None:
    text = (
        "<unused94>thought\nLooking at the image, the heart is enlarged. "
        'Final Answer: ```json\n{"findings": [{"description": "Enlarged cardiac silhouette", '
        '"confidence": 0.6}], "overall_impression": "Possible cardiomegaly."}\n```'
    )
    parsed = parse_answer(text)
    assert parsed.thinking_stripped is True
    assert [f.description for f in parsed.findings] == ["Enlarged cardiac silhouette"]
    assert parsed.needs_review is True
    assert any("no end marker" in problem for problem in parsed.problems)


def test_unterminated_thinking_without_an_answer_yields_nothing() -> None:
    parsed = parse_answer("<unused94>thought\nThe lungs show a possible nodule, let me think")
    assert parsed.findings == ()
    assert parsed.needs_review is True
    assert parsed.thinking_stripped is True
    assert any("no answer" in problem for problem in parsed.problems)


def test_broken_json_is_repaired_and_every_repair_recorded() -> None:
    parsed = parse_answer(BROKEN_JSON_ANSWER, slice_count=40)
    assert [f.description for f in parsed.findings] == [
        "Consolidation in the left lower lobe",
        "Trace left pleural effusion",
    ]
    assert parsed.findings[0].confidence_raw == 70.0
    assert parsed.findings[1].confidence_raw == "40%"
    assert parsed.findings[0].slice == 22
    assert set(parsed.repairs) >= {
        "replaced typographic quotes with plain quotes",
        "removed comments",
        "removed trailing commas",
        "finding 1 slice was text, read as an integer",
    }
    assert parsed.needs_review is False  # every repair was syntax only


def test_narrative_answer_becomes_one_low_confidence_finding_for_review() -> None:
    parsed = parse_answer(NARRATIVE_ANSWER)
    assert len(parsed.findings) == 1
    (finding,) = parsed.findings
    assert finding.origin == "narrative"
    assert finding.description == NARRATIVE_ANSWER
    assert finding.confidence_raw is None
    assert parsed.needs_review is True
    assert any("no usable findings JSON" in problem for problem in parsed.problems)
    safe = apply_safety(parsed)
    assert safe.findings[0].confidence.value <= 0.3
    assert safe.needs_review is True


def test_unparseable_json_falls_back_to_narrative_and_names_the_problem() -> None:
    text = '```json\n{"findings": [{"description": "Nodule" "confidence": 0.7}]}\n```'
    parsed = parse_answer(text)
    assert len(parsed.findings) == 1
    assert parsed.findings[0].origin == "narrative"
    assert parsed.needs_review is True
    assert any("unparseable JSON" in problem for problem in parsed.problems)


def test_truncated_json_is_not_completed() -> None:
    text = '```json\n{"findings": [{"description": "Right apical pneumothor'
    parsed = parse_answer(text)
    assert [f.origin for f in parsed.findings] == ["narrative"]
    assert parsed.needs_review is True
    assert any("never closed" in problem for problem in parsed.problems)


def test_empty_findings_stay_empty() -> None:
    parsed = parse_answer(EMPTY_FINDINGS_ANSWER)
    assert parsed.findings == ()
    assert parsed.boxes == ()
    assert parsed.overall_impression == "No acute cardiopulmonary abnormality."
    assert parsed.needs_review is False


def test_empty_answer_yields_no_finding_and_needs_review() -> None:
    parsed = parse_answer("   \n")
    assert parsed.findings == ()
    assert parsed.needs_review is True
    assert parsed.problems == ("the model gave no answer text (no findings JSON)",)


def test_nothing_is_invented_for_missing_fields() -> None:
    parsed = parse_answer('{"findings": [{"description": "Mild cardiomegaly."}]}')
    (finding,) = parsed.findings
    assert finding == ParsedFinding(index=0, description="Mild cardiomegaly.")
    assert finding.location is None
    assert finding.impression is None
    assert finding.confidence_raw is None
    assert finding.measurements == ()
    assert finding.slice is None
    assert parsed.overall_impression is None
    assert parsed.boxes == ()


def test_findings_without_text_and_measurements_without_value_are_dropped() -> None:
    text = (
        '{"findings": [{}, {"confidence": 0.9}, {"description": "Hepatic cyst", '
        '"measurements": [{"name": "diameter", "unit": "mm"}, {"name": "depth", "value": ""}]}]}'
    )
    parsed = parse_answer(text)
    assert [f.description for f in parsed.findings] == ["Hepatic cyst"]
    assert parsed.findings[0].index == 0
    assert parsed.findings[0].measurements == ()
    assert parsed.needs_review is True
    assert any("finding 1 has no description" in problem for problem in parsed.problems)
    assert any("finding 2 has no description" in problem for problem in parsed.problems)
    assert any("measurement 1 has no value" in problem for problem in parsed.problems)


def test_impression_only_finding_uses_the_model_impression_as_description() -> None:
    parsed = parse_answer('{"findings": [{"impression": "Possible small pneumothorax"}]}')
    assert parsed.findings[0].description == "Possible small pneumothorax"
    assert any("impression is used as the description" in r for r in parsed.repairs)


def test_slice_outside_the_images_sent_is_rejected() -> None:
    text = (
        '{"findings": [{"description": "Liver lesion", "slice": 120}, '
        '{"description": "Renal cyst", "slice": 0}]}'
    )
    parsed = parse_answer(text, slice_count=85)
    assert [f.slice for f in parsed.findings] == [None, None]
    assert parsed.needs_review is True
    assert any("slice 120 is outside 1..85" in problem for problem in parsed.problems)


def test_nan_confidence_is_not_accepted() -> None:
    parsed = parse_answer('{"findings": [{"description": "Nodule", "confidence": NaN}]}')
    assert parsed.findings[0].origin == "narrative"
    assert parsed.needs_review is True


def test_measurement_text_is_split_into_value_and_unit() -> None:
    text = (
        '{"findings": [{"description": "Aortic aneurysm", "measurements": '
        '[{"name": "diameter", "value": "5.2 cm"}, "12 mm", {"name": "size", "value": "2 x 3"}]}]}'
    )
    (finding,) = parse_answer(text).findings
    assert [(m.name, m.value, m.unit) for m in finding.measurements] == [
        ("diameter", 5.2, "cm"),
        (None, 12.0, "mm"),
        ("size", "2 x 3", None),
    ]


def test_template_echo_is_ignored_and_the_real_answer_used() -> None:
    text = (
        'You asked for: {"findings": [{"description": "<what is seen>", "location": '
        '"<anatomical location>"}], "overall_impression": "<hedged overall impression>"}\n'
        '```json\n{"findings": [{"description": "Left basal atelectasis", "confidence": 0.5}]}\n```'
    )
    parsed = parse_answer(text)
    assert [f.description for f in parsed.findings] == ["Left basal atelectasis"]
    assert "ignored JSON that echoes the prompt's schema placeholders" in parsed.repairs


def test_two_different_findings_objects_take_the_last_and_ask_for_review() -> None:
    text = (
        'First attempt: {"findings": [{"description": "Possible rib fracture"}]}\n'
        'Corrected:\n```json\n{"findings": [{"description": "Possible left 6th rib fracture"}]}'
        "\n```"
    )
    parsed = parse_answer(text)
    assert [f.description for f in parsed.findings] == ["Possible left 6th rib fracture"]
    assert parsed.needs_review is True
    assert any("2 different findings JSON blocks" in problem for problem in parsed.problems)


def test_repeated_identical_json_is_read_once() -> None:
    block = '{"findings": [{"description": "Small hiatus hernia"}]}'
    parsed = parse_answer(f"{block}\nFinal Answer: {block}")
    assert len(parsed.findings) == 1
    assert parsed.needs_review is False


def test_unrelated_json_in_prose_does_not_make_findings() -> None:
    text = 'Coordinates use [y0, x0, y1, x1] and {"note": "n/a"}. I see no abnormality.'
    parsed = parse_answer(text)
    assert [f.origin for f in parsed.findings] == ["narrative"]


def test_focused_answer_yields_boxes_and_no_findings() -> None:
    parsed = parse_answer(FOCUSED_ANSWER, expect="boxes")
    assert parsed.thinking_stripped is True
    assert parsed.findings == ()
    assert parsed.needs_review is False
    (box,) = parsed.boxes
    assert (box.y0, box.x0, box.y1, box.x1, box.label) == (
        180,
        402,
        262,
        488,
        "right sternoclavicular joint",
    )
    assert box.finding_index is None


def test_focused_answer_with_nothing_found() -> None:
    parsed = parse_answer("Not visible on this image.\n```json[]```", expect="boxes")
    assert parsed.boxes == ()
    assert parsed.findings == ()
    assert parsed.needs_review is False


def test_focused_narrative_without_boxes_needs_review() -> None:
    parsed = parse_answer("I cannot localize the structure on this image.", expect="boxes")
    assert parsed.boxes == ()
    assert [f.origin for f in parsed.findings] == ["narrative"]
    assert any("box_2d JSON list" in problem for problem in parsed.problems)


def test_boxes_are_clamped_ordered_and_bad_boxes_dropped() -> None:
    text = (
        '[{"box_2d": [500, 600, 100, 1200], "label": "effusion"}, '
        '{"box_2d": [1, 2, 3], "label": "bad"}, {"box_2d": ["10", "20", "30", "40"]}]'
    )
    parsed = parse_answer(text, expect="boxes")
    assert [(b.y0, b.x0, b.y1, b.x1, b.label) for b in parsed.boxes] == [
        (100, 600, 500, 1000, "effusion"),
        (10, 20, 30, 40, None),
    ]
    assert "box 1 coordinates clamped to 0..1000" in parsed.repairs
    assert "box 1 corners were swapped" in parsed.repairs
    assert parsed.needs_review is True  # the dropped box is a problem


def test_comparison_interval_change_is_normalized() -> None:
    text = (
        '{"findings": ['
        '{"description": "Right lower lobe nodule", "change": "Increased in size"}, '
        '{"description": "Left effusion", "change": "resolved"}, '
        '{"description": "Granuloma", "change": "unchanged"}, '
        '{"description": "Odd", "change": "worse-ish"}]}'
    )
    parsed = parse_answer(text)
    assert [f.interval_change for f in parsed.findings] == ["larger", "resolved", "stable", None]
    assert any("'worse-ish'" in problem for problem in parsed.problems)


def test_chat_control_tokens_after_the_answer_are_removed() -> None:
    text = '{"findings": []}<end_of_turn>\n<start_of_turn>model\n<eos>'
    parsed = parse_answer(text)
    assert parsed.answer_text == '{"findings": []}'
    assert parsed.needs_review is False


def test_a_parsed_answer_with_problems_must_need_review() -> None:
    with pytest.raises(ValueError, match="needs_review"):
        ParsedAnswer(problems=("something",), needs_review=False)


def test_plain_text_findings_value_is_kept_as_narrative() -> None:
    parsed = parse_answer('{"findings": "Diffuse bilateral ground-glass opacities."}')
    assert [(f.description, f.origin) for f in parsed.findings] == [
        ("Diffuse bilateral ground-glass opacities.", "narrative")
    ]
    assert parsed.needs_review is True


def test_half_filled_template_keeps_real_values_and_drops_placeholders() -> None:
    text = (
        '{"findings": [{"description": "Right hilar mass", "location": "<anatomical location>", '
        '"confidence": 0.5}]}'
    )
    parsed = parse_answer(text)
    (finding,) = parsed.findings
    assert finding.description == "Right hilar mass"
    assert finding.location is None
    assert parsed.needs_review is True
    assert any("placeholder" in problem for problem in parsed.problems)


def test_unclosed_bracket_in_prose_does_not_hide_a_good_answer() -> None:
    text = (
        'Note (see {findings below.\n```json\n{"findings": [{"description": "Atelectasis"}]}\n```'
    )
    parsed = parse_answer(text)
    assert [f.description for f in parsed.findings] == ["Atelectasis"]
    assert parsed.needs_review is False
