"""Per-character font fallback for the report PDF: ReportLab sets a whole text run in one font,
so text is first cut into runs by which font covers each character (a pure function, tested on
its own), then each run is set in its font.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Container, Sequence
from dataclasses import dataclass, field

#: A font by name with the code points it has glyphs for.
Coverage = tuple[str, Container[int]]


@dataclass(frozen=True)
class Split:
    runs: list[tuple[str, str]]  # (font name, text), adjacent runs in different fonts
    missing: frozenset[int] = field(default_factory=frozenset)  # code points no font covers


def _sticky(char: str) -> bool:
    """Characters that stay in the current run when its font has them (spaces between CJK
    words, combining accents after their base letter), and control characters (newlines)."""
    return char.isspace() or unicodedata.combining(char) != 0 or ord(char) < 0x20


def split_runs(text: str, fonts: Sequence[Coverage]) -> Split:
    """Cut ``text`` into runs, each set in the first of ``fonts`` (primary first) that covers
    its characters. A character no font covers stays in the current run (the primary font at
    the start) and is reported in ``missing``."""
    if not fonts:
        raise ValueError("no fonts")
    primary = fonts[0][0]
    runs: list[tuple[str, str]] = []
    missing: set[int] = set()
    current: str | None = None
    chunk: list[str] = []
    for char in text:
        point = ord(char)
        if current is not None and (
            point < 0x20 or (_sticky(char) and point in _coverage(fonts, current))
        ):
            chunk.append(char)
            continue
        name = next((n for n, covered in fonts if point in covered), None)
        if name is None:
            if point >= 0x20:
                missing.add(point)
            name = current or primary
        if name != current:
            if chunk and current is not None:
                runs.append((current, "".join(chunk)))
            current, chunk = name, []
        chunk.append(char)
    if chunk and current is not None:
        runs.append((current, "".join(chunk)))
    return Split(runs, frozenset(missing))


def _coverage(fonts: Sequence[Coverage], name: str) -> Container[int]:
    for font_name, covered in fonts:
        if font_name == name:
            return covered
    return ()
