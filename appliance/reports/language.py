"""The language of generated report text: every sentence the appliance writes into a report or
its exports (technique, comparison, limitations, disclaimer, verification notice, section
titles, PDF page furniture, SR comments) comes from ``appliance/reports/locales/<code>.json``,
separate from the screen's catalogs (``ui/locales``): a report is written in the site's report
language (``RADIANT_REPORT_LANGUAGE``, or chosen per report), whatever the screen shows.

Plural forms follow the CLDR plural rules through Babel (French "one" covers 0 and 1): a
plural text has one key per CLDR category (``key.one``, ``key.other``; a missing category
falls back to ``other``). Numbers are formatted with the language's decimal sign and grouping
(CLDR data through Babel). The model's own text is never translated.
"""

from __future__ import annotations

import json
import string
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

from babel import Locale
from babel.numbers import format_decimal

ReportLanguage = Literal["en", "fr"]
LANGUAGES: tuple[str, ...] = get_args(ReportLanguage)
DEFAULT: ReportLanguage = "en"
LOCALES = Path(__file__).parent / "locales"


@cache
def catalog(code: str) -> dict[str, str]:
    """The report catalog of language ``code`` (empty when there is none)."""
    path = LOCALES / f"{code}.json"
    if code not in LANGUAGES or not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def checked(code: str | None) -> ReportLanguage:
    """``code`` when it is a report language, else the default."""
    if code == "fr":
        return "fr"
    return DEFAULT


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a catalog text."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def text(code: str, key: str, **params: Any) -> str:
    """``key`` in language ``code`` (English when missing there) with ``params`` filled in."""
    found = catalog(code).get(key) or catalog(DEFAULT).get(key)
    if found is None:
        raise KeyError(f"no report text {key!r}")
    return found.format(**params) if params else found


def plural_category(code: str, count: int) -> str:
    """The CLDR plural category of ``count`` in language ``code`` (``one``, ``other``...)."""
    return str(Locale.parse(checked(code)).plural_form(abs(count)))


def plural(code: str, key: str, count: int, **params: Any) -> str:
    """``key.<category>`` for ``count``, with ``{count}`` formatted in the language."""
    category = plural_category(code, count)
    table = catalog(checked(code))
    chosen = f"{key}.{category}" if f"{key}.{category}" in table else f"{key}.other"
    return text(code, chosen, count=number(code, count), **params)


def number(code: str, value: float, digits: int = 3) -> str:
    """``value`` with the language's decimal sign and grouping, at most ``digits`` decimals
    (``2.5`` is ``2,5`` in French; ``12000`` is ``12 000`` with a narrow no-break space)."""
    pattern = "#,##0" + ("." + "#" * digits if digits > 0 else "")
    return str(format_decimal(value, format=pattern, locale=checked(code)))


def name(code: str) -> str:
    """The language's own name (``Français``)."""
    return text(code, "language.name")


def generated_sentences(code: str) -> list[str]:
    """Every text of the catalog (placeholders left in): what the report generator can write."""
    return [value for key, value in catalog(code).items() if key != "language.name"]
