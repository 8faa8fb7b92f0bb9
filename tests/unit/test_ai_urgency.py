"""Study-level urgency: the model's call as parsed, the critical findings list matched with
ConText (negated mentions never count), the higher of the two through the safety layer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai.parsing import parse_answer
from ai.safety import apply_safety
from ai.urgency import (
    DEFAULT_LIST_PATH,
    CriticalListError,
    load_critical_list,
    match_critical,
    parse_critical_list,
)
from appliance.config import Settings


def _answer(findings: list[dict[str, object]], **extra: object) -> str:
    body = {"findings": findings, **extra}
    return "<unused94>thought\nLooking.<unused95>```json\n" + json.dumps(body) + "\n```"


def _finding(text: str) -> dict[str, object]:
    return {"description": text, "location": "head", "confidence": 0.8}


@pytest.mark.parametrize(
    ("value", "level", "flag"),
    [
        ("critical", "critical", None),
        (" URGENT ", "urgent", None),
        ("Routine.", "routine", None),
        ("high", "routine", "invalid: 'high'"),
        (3, "routine", "invalid: 3"),
        (None, "routine", "absent"),
        ({"level": "critical"}, "routine", "invalid: {'level': 'critical'}"),
        ("<critical, urgent or routine>", "routine", "invalid: '<critical, urgent or routine>'"),
    ],
)
def test_model_urgency_is_parsed_or_routine_with_a_flag(
    value: object, level: str, flag: str | None
) -> None:
    parsed = parse_answer(_answer([_finding("A small nodule.")], urgency=value, urgency_reason="x"))
    assert parsed.urgency == level
    assert parsed.urgency_flag == flag
    # The urgency never makes an otherwise clean answer need review.
    assert not parsed.needs_review


def test_absent_urgency_and_no_json_never_crash() -> None:
    assert parse_answer(_answer([_finding("A nodule.")])).urgency_flag == "absent"
    narrative = parse_answer("I cannot read this study.")
    assert (narrative.urgency, narrative.urgency_flag) == ("routine", "absent")
    boxes = parse_answer("```json\n[]\n```", expect="boxes")
    assert (boxes.urgency, boxes.urgency_flag) == ("routine", "not requested")


def _levels(*texts: str) -> list[tuple[str, str]]:
    found = match_critical([(f"t{i}", t) for i, t in enumerate(texts)], load_critical_list())
    return [(m.finding_id, m.urgency) for m in found]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Acute subdural hematoma over the left convexity.",
            [("intracranial_hemorrhage", "critical")],
        ),
        (
            "Findings may represent an acute subdural haematoma.",
            [("intracranial_hemorrhage", "critical")],
        ),
        ("Small right apical pneumothorax.", [("pneumothorax", "urgent")]),
        ("Tension pneumothorax with mediastinal shift.", [("tension_pneumothorax", "critical")]),
        ("Free intraperitoneal air under the diaphragm.", [("pneumoperitoneum", "critical")]),
        ("Dilated loops suggestive of small bowel obstruction.", [("bowel_obstruction", "urgent")]),
        ("Filling defect consistent with pulmonary emboli.", [("pulmonary_embolism", "critical")]),
        ("Hématome sous-dural aigu frontal gauche.", [("intracranial_hemorrhage", "critical")]),
        ("Dissection aortique de type A.", [("aortic_dissection", "critical")]),
    ],
)
def test_critical_terms_are_found(text: str, expected: list[tuple[str, str]]) -> None:
    assert _levels(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "No pneumothorax.",
        "There is no evidence of intracranial hemorrhage or midline shift.",
        "Pulmonary embolism is ruled out.",
        "History of pulmonary embolism.",
        "Pas de pneumothorax.",
        "Absence d'hémorragie intracrânienne.",
        "Pneumopéritoine éliminé.",
        "Mild degenerative change of the lumbar spine.",
    ],
)
def test_negated_historical_and_unrelated_mentions_raise_nothing(text: str) -> None:
    assert _levels(text) == []


def test_a_negation_ends_at_but() -> None:
    assert _levels("No fracture, but a subdural hematoma is present.") == [
        ("intracranial_hemorrhage", "critical")
    ]


def test_the_higher_level_wins_with_its_reasons() -> None:
    # The model says routine; the list finds a subdural haematoma in its findings.
    safe = apply_safety(
        parse_answer(
            _answer(
                [_finding("This is an acute subdural hematoma, possibly requiring surgery.")],
                urgency="routine",
            )
        )
    )
    assert safe.urgency is not None
    assert (safe.urgency.level, safe.urgency.model_level) == ("critical", "routine")
    assert safe.urgency.list_level == "critical"
    assert [m.finding_id for m in safe.urgency.matches] == ["intracranial_hemorrhage"]
    assert any("intracranial haemorrhage" in r for r in safe.urgency.reasons)
    assert safe.verification_flag == "UNVERIFIED"

    # The model says critical with a definitive reason: the level stays, the reason is hedged.
    safe = apply_safety(
        parse_answer(
            _answer(
                [_finding("A hyperdense collection.")],
                urgency="critical",
                urgency_reason="This is an acute subdural hematoma.",
            )
        )
    )
    assert safe.urgency is not None and safe.urgency.level == "critical"
    assert safe.urgency.model_reason is not None
    assert safe.urgency.model_reason != "This is an acute subdural hematoma."
    assert "hematoma" in safe.urgency.model_reason


def test_routine_answer_and_negated_finding_stay_routine() -> None:
    for text in ("Normal study.", "No pneumothorax. No free air."):
        safe = apply_safety(parse_answer(_answer([_finding(text)], urgency="routine")))
        assert safe.urgency is not None
        assert (safe.urgency.level, safe.urgency.matches) == ("routine", ())


def test_the_packaged_list_covers_the_acr_category_1_examples() -> None:
    data = json.loads(DEFAULT_LIST_PATH.read_text(encoding="utf-8"))
    ids = {item["id"]: item for item in data["findings"]}
    for wanted in (
        "intracranial_hemorrhage",
        "tension_pneumothorax",
        "pulmonary_embolism",
        "aortic_dissection",
        "pneumoperitoneum",
    ):
        assert ids[wanted]["urgency"] == "critical" and ids[wanted]["fr"], wanted
    assert ids["bowel_obstruction"]["urgency"] == "urgent"


def test_a_site_list_replaces_the_packaged_one(tmp_path: Path) -> None:
    site = tmp_path / "critical.json"
    site.write_text(
        json.dumps(
            {"findings": [{"id": "malaria", "urgency": "urgent", "en": ["cerebral malaria"]}]}
        ),
        encoding="utf-8",
    )
    critical = load_critical_list(site)
    found = match_critical([("finding 1", "Pattern suggestive of cerebral malaria.")], critical)
    assert [(m.finding_id, m.urgency) for m in found] == [("malaria", "urgent")]
    assert match_critical([("finding 1", "Subdural hematoma.")], critical) == []
    assert Settings(data_dir=tmp_path, triage_critical_list=site).triage_critical_list == site


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"findings": [{"urgency": "critical", "en": ["x"]}]},
        {"findings": [{"id": "a", "urgency": "soon", "en": ["x"]}]},
        {"findings": [{"id": "a", "urgency": "urgent"}]},
        {"findings": [{"id": "a", "urgency": "urgent", "en": [""]}]},
        {"findings": [{"id": "a", "urgency": "urgent", "en": ["x"]}] * 2},
    ],
)
def test_a_malformed_list_is_refused_by_name(data: object) -> None:
    with pytest.raises(CriticalListError):
        parse_critical_list(data, "site.json")


def test_a_bad_list_setting_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="triage_critical_list"):
        Settings(data_dir=tmp_path, triage_critical_list=bad)
    with pytest.raises(ValueError, match="cannot read"):
        Settings(data_dir=tmp_path, triage_critical_list=tmp_path / "missing.json")
