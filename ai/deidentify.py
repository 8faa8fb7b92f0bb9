"""Scrub the patient's known identifiers from free text before it leaves for a cloud engine.

The technician's clinical indication is free text: a name, a record number or a birth date typed
into it would go to a third party with the prompt. :func:`scrub` removes the values the
appliance already knows for this patient (PS3.15 Annex E lists Patient's Name, Patient ID,
Patient's Birth Date and Accession Number among the attributes a de-identification removes):

- every component of the name (DICOM PN ``Family^Given^Middle^Prefix^Suffix``, or first and
  last name), in any order, whatever the case, with or without accents;
- the MRN and the accession number, case-insensitively, as whole tokens;
- the birth date in the common written forms: ISO 8601, DICOM DA, day-first and month-first
  with ``/``, ``-`` or ``.``, two- or four-digit years, and day-month-year in English or French
  words ("12 March 1961", "March 12, 1961", "12 mars 1961").

Each is replaced by a bracketed placeholder; :class:`ScrubResult` counts what was replaced
(the actions name a kind and a count, never a value: they go to the audit trail).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

_MONTHS_EN = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_MONTHS_FR = [
    "janvier",
    "fevrier",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "aout",
    "septembre",
    "octobre",
    "novembre",
    "decembre",
]
#: Name components shorter than this are not scrubbed alone (initials would hit ordinary words).
MIN_NAME_PART = 2


@dataclass(frozen=True, slots=True)
class PatientIdentifiers:
    """What the record says about the patient (any may be unknown)."""

    names: tuple[str, ...] = ()
    mrn: str | None = None
    birth_date: str | None = None  # DICOM DA (YYYYMMDD) or ISO 8601 (YYYY-MM-DD)
    accession: str | None = None


@dataclass(frozen=True, slots=True)
class ScrubResult:
    """The scrubbed text and how many of each kind were replaced."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def actions(self) -> list[str]:
        """``kind:count`` for each kind replaced, e.g. ``["name:2", "birth_date:1"]``."""
        return [f"{kind}:{count}" for kind, count in sorted(self.counts.items()) if count]


def _fold(text: str) -> tuple[str, list[int]]:
    """Case- and accent-folded text with, for each folded character, its index in ``text``."""
    out: list[str] = []
    index: list[int] = []
    for position, char in enumerate(text):
        for piece in unicodedata.normalize("NFKD", char):
            if unicodedata.combining(piece):
                continue
            for folded in piece.casefold():
                out.append(folded)
                index.append(position)
    return "".join(out), index


def _name_parts(names: tuple[str, ...]) -> list[str]:
    parts: set[str] = set()
    for name in names:
        for piece in re.split(r"[\^\s,]+", name or ""):
            piece = piece.strip(" .-'")
            if len(piece) >= MIN_NAME_PART:
                parts.add(_fold(piece)[0])
    return sorted(parts, key=len, reverse=True)


def _parse_date(value: str | None) -> date | None:
    if not value:
        return None
    digits = re.sub(r"\D", "", value)
    if len(digits) != 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _date_patterns(born: date) -> list[str]:
    """Regular expressions (over folded text) for the written forms of ``born``."""
    y4, y2 = f"{born.year:04d}", f"{born.year % 100:02d}"
    d, m = born.day, born.month
    day = f"0?{d}"
    month = f"0?{m}"
    sep = r"\s*[/.\-]\s*"
    forms = [
        rf"{y4}{sep}0?{m}{sep}0?{d}",
        rf"{y4}{m:02d}{d:02d}",
        rf"{day}{sep}{month}{sep}(?:{y4}|{y2})",
        rf"{month}{sep}{day}{sep}(?:{y4}|{y2})",
    ]
    names = [_MONTHS_EN[m - 1], _MONTHS_FR[m - 1]]
    words = "|".join(sorted({n for n in names} | {n[:3] for n in names}, key=len, reverse=True))
    ordinal = rf"{day}(?:st|nd|rd|th|er)?"
    forms += [
        rf"{ordinal}\s*(?:{words})\.?,?\s*(?:{y4}|{y2})",
        rf"(?:{words})\.?\s*{ordinal},?\s*(?:{y4}|{y2})",
    ]
    return [rf"(?<![0-9a-z])(?:{form})(?![0-9a-z])" for form in forms]


def scrub(text: str, ids: PatientIdentifiers) -> ScrubResult:
    """``text`` with the patient's known identifiers replaced (see the module docstring)."""
    folded, index = _fold(text)
    spans: list[tuple[int, int, str]] = []
    for value, kind in ((ids.mrn, "mrn"), (ids.accession, "accession")):
        if value and value.strip():
            needle = re.escape(_fold(value.strip())[0])
            for match in re.finditer(rf"(?<![0-9a-z]){needle}(?![0-9a-z])", folded):
                spans.append((match.start(), match.end(), kind))
    born = _parse_date(ids.birth_date)
    if born is not None:
        for pattern in _date_patterns(born):
            for match in re.finditer(pattern, folded):
                spans.append((match.start(), match.end(), "birth_date"))
    for part in _name_parts(ids.names):
        for match in re.finditer(rf"(?<![\w]){re.escape(part)}(?![\w])", folded):
            spans.append((match.start(), match.end(), "name"))
    placeholder = {
        "name": "[name]",
        "mrn": "[id]",
        "accession": "[id]",
        "birth_date": "[date of birth]",
    }
    counts: dict[str, int] = {}
    pieces: list[str] = []
    position = 0
    for start, end, kind in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        begin = index[start]
        if begin < position:
            continue  # overlaps a longer identifier already replaced
        stop = index[end - 1] + 1
        pieces.append(text[position:begin])
        pieces.append(placeholder[kind])
        counts[kind] = counts.get(kind, 0) + 1
        position = stop
    pieces.append(text[position:])
    return ScrubResult(text="".join(pieces), counts=counts)
