"""One translation catalog per language: ``ui/locales/<code>.json`` (flat ``key: text`` maps with
``{name}`` placeholders). Adding a language is adding a file; English is the reference.

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

LOCALES = Path(__file__).parent / "locales"
DEFAULT = "en"
SESSION_KEY = "lang"


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
    """The language of the current session; the default outside a screen session."""
    try:
        from nicegui import app

        code = app.storage.user.get(SESSION_KEY)
    except (RuntimeError, AssertionError, KeyError):
        return DEFAULT
    return code if isinstance(code, str) and code in languages() else DEFAULT


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
