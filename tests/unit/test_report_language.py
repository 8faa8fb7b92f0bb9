"""Generated report text in the report language: the catalogs (every key in both languages,
the same placeholders, a plural form per CLDR category), Babel's plural rules and number
formats, the technique, comparison, limitations, disclaimer and verification notice in French
with no English generator sentence, and a draft's language changed per report."""

from __future__ import annotations

import re

import pytest

from ai.safety import DISCLAIMER
from appliance.reports import builder, language, technique
from appliance.reports.models import (
    ComparisonStudy,
    Provenance,
    ReportContent,
    ReportHeader,
    TechniqueFacts,
)
from appliance.reports.verification import Verification


def _english_pieces() -> list[str]:
    english, french = language.catalog("en"), language.catalog("fr")
    pieces = set()
    for key, text in english.items():
        for part in re.split(r"\{[^}]*\}", text):
            piece = part.strip(" .,:;()[]")
            if len(re.findall(r"[A-Za-z]+", piece)) >= 2 and piece not in french[key]:
                pieces.add(piece)
    return sorted(pieces)


def _facts() -> TechniqueFacts:
    return TechniqueFacts(
        series_count=1,
        instance_count=133,
        modalities=["CT"],
        body_parts=["HEAD"],
        slice_thickness_mm=[2.5, 5.0],
        kvp=[120.0],
        exposure_mas=[1250.0],
        series=["Axial brain"],
    )


def _header() -> ReportHeader:
    return ReportHeader(
        facility="Site", patient_id="p", patient_name=None, mrn="1", birth_date=None, sex=None,
        study_id="s", study_uid="1.2.3", accession_number=None, exam=None, modalities=["CT"],
        study_date=None, study_time=None, referring_physician=None,
    )


def test_both_catalogs_have_the_same_keys_and_placeholders() -> None:
    english, french = language.catalog("en"), language.catalog("fr")
    assert len(english) > 80
    assert sorted(set(english) ^ set(french)) == []
    wrong = [k for k in english
             if language.placeholders(english[k]) != language.placeholders(french[k])]
    assert wrong == []
    assert english["disclaimer"] == DISCLAIMER  # the safety layer's own sentence


def test_every_plural_text_has_one_and_other() -> None:
    for code in language.LANGUAGES:
        table = language.catalog(code)
        stems = {k.rsplit(".", 1)[0] for k in table if k.endswith((".one", ".other"))}
        for stem in stems:
            assert f"{stem}.one" in table and f"{stem}.other" in table, (code, stem)


@pytest.mark.parametrize(
    ("code", "count", "expected"),
    [
        ("en", 1, "1 image"), ("en", 0, "0 images"), ("en", 2, "2 images"),
        ("fr", 0, "0 image"), ("fr", 1, "1 image"), ("fr", 2, "2 images"),
        ("fr", 1000000, "1\u202f000\u202f000 images"),
    ],
)
def test_plural_forms_follow_cldr(code: str, count: int, expected: str) -> None:
    assert language.plural(code, "technique.images", count) == expected


def test_numbers_use_the_language_decimal_sign_and_grouping() -> None:
    assert language.number("en", 71.8, 1) == "71.8"
    assert language.number("fr", 71.8, 1) == "71,8"
    assert language.number("fr", 12000) == "12\u202f000"
    assert language.number("en", 12000) == "12,000"


def test_technique_in_english_and_french() -> None:
    english = technique.narrative(_facts(), "en")
    assert english.startswith("CT head: 1 series, 133 images. Slice thickness 2.5-5 mm.")
    one = TechniqueFacts(series_count=1, instance_count=1, modalities=["CT"])
    assert technique.narrative(one, "en").startswith("CT: 1 series, 1 image.")
    french = technique.narrative(_facts(), "fr")
    assert french.startswith(
        "TDM de la tête : 1 série, 133 images. Épaisseur de coupe 2,5 à 5 mm."
    ), french
    assert "1\u202f250 mAs" in french
    assert "Aucun produit de contraste" in french
    assert [p for p in _english_pieces() if p in french] == []


def test_generated_sections_in_french_carry_no_english_sentence() -> None:
    prior = ComparisonStudy(study_id="x", study_uid="1.2", study_date="20240105",
                            description="CT HEAD")
    texts = [
        builder.comparison_text([], "fr"),
        builder.comparison_text([prior], "fr"),
        builder.limitations_text(12, True, "fr"),
        builder.limitations_text(None, True, "fr"),
        builder.disclaimer("fr"),
        Verification.of("final", "Dr A", "2026-01-01T10:00:00Z").notice("x", None, "fr") or "",
        Verification.of("amended", "Dr A", "2026-01-01T10:00:00Z").notice("x", None, "fr") or "",
    ]
    assert texts[0] == "Néant."
    assert texts[1] == "Examen antérieur du 2024-01-05 (CT HEAD)."
    assert "vu que 12 images" in texts[2]
    whole = " ".join(texts)
    assert [p for p in _english_pieces() if p in whole] == []
    # The safety wording stays in both languages.
    assert "UNVERIFIED" in builder.disclaimer("fr") and "UNVERIFIED" in builder.disclaimer("en")
    assert "VERIFIED" in texts[5]


def test_a_draft_changes_language_and_keeps_edited_text() -> None:
    facts = _facts()
    content = ReportContent(
        header=_header(),
        language="fr",
        technique=technique.narrative(facts, "fr"),
        technique_facts=facts,
        comparison="Comparé au scanner de 2023 (texte du radiologue).",
        limitations=builder.limitations_text(40, True, "fr"),
        disclaimer=builder.disclaimer("fr"),
        provenance=Provenance(analysis_id="a", partial_instances=40),
    )
    content.header.exam = technique.exam_name(facts, "fr")
    english = builder.relanguage(content, "en")
    assert english.language == "en"
    assert english.technique == technique.narrative(facts, "en")
    assert english.header.exam == "CT head"
    assert english.comparison == content.comparison  # edited by a radiologist: kept
    assert english.limitations == builder.limitations_text(40, True, "en")
    assert english.disclaimer == DISCLAIMER
    back = builder.relanguage(english, "fr")
    assert back.technique == content.technique and back.disclaimer == content.disclaimer


def test_the_api_arrival_sentence_counts_images_in_english_plurals() -> None:
    from appliance.analysis.completeness import Arrival

    assert "arriving: 1 image so far." in Arrival("s", False, 1, None).words()
    assert "arriving: 2 images so far." in Arrival("s", False, 2, None).words()
    assert Arrival("s", True, 1, None).words() == "The study is complete (1 image)."
