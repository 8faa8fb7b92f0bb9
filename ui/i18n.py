"""One translation catalog per language: ``ui/locales/<code>.json`` (flat ``key: text`` maps with
``{name}`` placeholders). Adding a language is adding a file; English is the reference.

A text that depends on a count has one key per CLDR plural category (``count.images.one``,
``count.images.other``; a category a language lacks falls back to ``other``), chosen with
Babel's plural rules for the language (French ``one`` covers 0 and 1) by :func:`plural`;
the count is written with the language's digits, decimal sign and grouping.

:func:`t` looks the key up in the language of the current screen session (``app.storage.user``,
key ``lang``), falls back to English, then to the key itself (the catalog test keeps that from
happening).
"""

from __future__ import annotations

import json
import string
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import format_decimal

LOCALES = Path(__file__).parent / "locales"
DEFAULT = "en"
SESSION_KEY = "lang"
# The site's screen language (RADIANT_LANGUAGE, chosen at provisioning): a session that has
# not chosen one shows this.
_SITE = {"code": DEFAULT}


def set_site_language(code: str) -> None:
    """The language of sessions that did not choose one (ignored when there is no catalog)."""
    _SITE["code"] = code if code in languages() else DEFAULT


@cache
def catalog(code: str) -> dict[str, str]:
    """The catalog of language ``code`` (empty when there is no such file)."""
    path = LOCALES / f"{code}.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def languages() -> dict[str, str]:
    """Available language codes and their own names (``language.name`` of each catalog)."""
    found = {}
    for path in sorted(LOCALES.glob("*.json")):
        found[path.stem] = catalog(path.stem).get("language.name", path.stem)
    return found


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a catalog text."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def current() -> str:
    """The language of the current session; the site's outside a screen session or when the
    session did not choose one."""
    site = _SITE["code"]
    try:
        from nicegui import app

        code = app.storage.user.get(SESSION_KEY)
    except (RuntimeError, AssertionError, KeyError):
        return site
    return code if isinstance(code, str) and code in languages() else site


def translate(code: str, key: str, **params: Any) -> str:
    """``key`` in language ``code`` with ``params`` filled in."""
    text = catalog(code).get(key) or catalog(DEFAULT).get(key) or key
    if not params:
        return text
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        return text


def t(key: str, **params: Any) -> str:
    """``key`` in the session's language."""
    return translate(current(), key, **params)


def number(code: str, value: float, digits: int = 0) -> str:
    """``value`` in language ``code``: grouping and decimal sign of CLDR (``71,8`` and
    ``12 000`` with a narrow no-break space in French), at most ``digits`` decimals."""
    pattern = "#,##0" + ("." + "#" * digits if digits > 0 else "")
    try:
        return str(format_decimal(value, format=pattern, locale=code))
    except (UnknownLocaleError, ValueError):
        return str(format_decimal(value, format=pattern, locale=DEFAULT))


def has_plural(key: str) -> bool:
    """Whether ``key`` is a plural text (it has an ``other`` form in English)."""
    return f"{key}.other" in catalog(DEFAULT)


def plural_key(code: str, key: str, count: int) -> str:
    """``key.<category>`` for ``count`` in language ``code`` (``key.other`` when the catalog
    has no text for that category)."""
    try:
        category = Locale.parse(code).plural_form(abs(count))
    except (UnknownLocaleError, ValueError):
        category = "other"
    chosen = f"{key}.{category}"
    return chosen if chosen in catalog(code) or chosen in catalog(DEFAULT) else f"{key}.other"


def translate_plural(code: str, key: str, count: int, **params: Any) -> str:
    """The plural text ``key`` for ``count`` in language ``code``, ``{count}`` formatted."""
    return translate(code, plural_key(code, key, count), count=number(code, count), **params)


def plural(key: str, count: int, **params: Any) -> str:
    """The plural text ``key`` for ``count`` in the session's language."""
    return translate_plural(current(), key, count, **params)
