"""The translation catalogs: every language has exactly the keys and placeholders of English,
every key the screens use exists, and no screen text bypasses the catalog."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from ui import i18n

UI = Path(i18n.__file__).resolve().parent
NOT_SCANNED: set[Path] = set()
TEXT_CALLS = {"label", "button", "notify", "chip", "tab", "checkbox", "switch", "input",
              "textarea", "select", "link", "markdown", "html", "expansion", "upload", "tooltip",
              "radio", "toggle", "number", "badge"}
TEXT_KEYWORDS = {"text", "label", "placeholder", "title", "caption", "close_button"}
LETTER = re.compile(r"[A-Za-zÀ-ÿ]")


def sources() -> list[Path]:
    return sorted(p for p in UI.rglob("*.py") if p not in NOT_SCANNED)


def literal_text(node: ast.AST) -> str | None:
    """The literal words in a string constant or f-string, if any."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if LETTER.search(node.value) else None
    if isinstance(node, ast.JoinedStr):
        parts = "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
        return parts if LETTER.search(parts) else None
    return None


def bypasses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in TEXT_CALLS:
            continue
        owner = node.func.value
        is_ui = isinstance(owner, ast.Name) and owner.id == "ui"
        if not is_ui and node.func.attr != "tooltip":
            continue
        keywords = [k.value for k in node.keywords if k.arg in TEXT_KEYWORDS]
        candidates = list(node.args[:1]) + keywords
        for candidate in candidates:
            text = literal_text(candidate)
            if text is not None:
                found.append(f"{path.relative_to(UI)}:{node.lineno} {node.func.attr}({text!r})")
    return found


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                node.func.attr == "t" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
            ):
                keys.add(node.args[0].value)
    return keys


def test_there_are_english_and_french_catalogs() -> None:
    assert {"en", "fr"} <= set(i18n.languages())
    assert i18n.languages()["fr"] == "Français"


@pytest.mark.parametrize("code", sorted(set(i18n.languages()) - {i18n.DEFAULT}))
def test_every_catalog_has_the_keys_and_placeholders_of_english(code: str) -> None:
    english, other = i18n.catalog(i18n.DEFAULT), i18n.catalog(code)
    assert sorted(set(english) - set(other)) == [], "missing"
    assert sorted(set(other) - set(english)) == [], "unknown"
    wrong = {
        key: (i18n.placeholders(english[key]), i18n.placeholders(other[key]))
        for key in english
        if i18n.placeholders(english[key]) != i18n.placeholders(other[key])
    }
    assert wrong == {}
    words = {k: re.sub(r"\{[^}]*\}", "", v) for k, v in english.items()}
    untranslated = [k for k in english if other[k] == english[k] and len(
        LETTER.findall(words[k])) > 12]
    assert untranslated == []


def test_catalogs_are_valid_flat_json() -> None:
    for path in sorted((UI / "locales").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items())


def test_every_literal_key_the_screens_use_exists() -> None:
    keys = used_keys()
    assert len(keys) > 150
    assert sorted(keys - set(i18n.catalog(i18n.DEFAULT))) == []


def test_first_boot_is_scanned_and_its_field_labels_exist() -> None:
    from ui import first_boot

    assert UI / "first_boot.py" in sources()
    labels = {f"firstboot.field.{name}" for name in first_boot.FIELD_KEYS}
    assert sorted(labels - set(i18n.catalog(i18n.DEFAULT))) == []


def test_no_screen_text_bypasses_the_catalog() -> None:
    found = [item for path in sources() for item in bypasses(path)]
    assert found == []


def test_the_scan_catches_a_literal(tmp_path: Path) -> None:
    sample = UI / "_scan_sample.py"
    try:
        sample.write_text('from nicegui import ui\nui.label("Hello")\nui.button(f"Go {1}")\n'
                          'ui.label(t("ok"))\nui.label("100%")\n', encoding="utf-8")
        assert [b.split(" ", 1)[1] for b in bypasses(sample)] == [
            "label('Hello')", "button('Go ')"]
    finally:
        sample.unlink()


def test_translate_fills_placeholders_and_falls_back_to_english() -> None:
    assert i18n.translate("fr", "viewer.slice", number=3, total=9) == "Coupe 3 / 9"
    assert i18n.translate("xx", "viewer.slice", number=3, total=9) == "Slice 3 / 9"
    assert i18n.translate("en", "no.such.key") == "no.such.key"


def test_plural_texts_follow_cldr_in_each_language() -> None:
    assert i18n.translate_plural("en", "count.images", 1) == "1 image"
    assert i18n.translate_plural("en", "count.series", 1) == "1 series"
    assert i18n.translate_plural("fr", "count.series", 1) == "1 série"
    assert i18n.translate_plural("fr", "count.series", 0) == "0 série"
    assert i18n.translate_plural("fr", "count.images", 133) == "133 images"
    assert i18n.translate_plural("fr", "count.images", 12000) == "12\u202f000 images"
    line = i18n.translate("en", "study.received", when="x",
                          images=i18n.translate_plural("en", "count.images", 1),
                          series=i18n.translate_plural("en", "count.series", 1))
    assert line.endswith("1 image in 1 series")
    for code in i18n.languages():
        table = i18n.catalog(code)
        stems = {k.rsplit(".", 1)[0] for k in table if k.endswith(".one")}
        assert len(stems) >= 8 and all(f"{s}.other" in table for s in stems), code


def test_the_ai_disclaimer_is_the_safety_layers_in_english_and_translated() -> None:
    from ai.safety import DISCLAIMER
    from appliance.reports import language

    assert i18n.translate("en", "analysis.disclaimer") == DISCLAIMER
    assert i18n.translate("fr", "analysis.disclaimer") == language.text("fr", "disclaimer")
    assert "UNVERIFIED" in i18n.translate("fr", "analysis.disclaimer")


def test_numbers_follow_the_screen_language() -> None:
    assert i18n.number("fr", 71.8, 1) == "71,8"
    assert i18n.number("en", 71.8, 1) == "71.8"
    assert i18n.number("fr", 1234567) == "1\u202f234\u202f567"
    assert i18n.number("xx", 1.5, 1) == "1.5"  # no such locale: English
