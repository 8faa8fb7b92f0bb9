"""Study-level urgency (triage): the model's own call and a site-editable critical findings list.

Two independent sources, the higher one wins (``routine`` < ``urgent`` < ``critical``):

1. **The model.** The primary and comparison prompts ask for ``urgency`` (``critical``,
   ``urgent`` or ``routine``) and ``urgency_reason`` in the findings JSON; :mod:`ai.parsing`
   reads them (absent or invalid: ``routine`` with a flag saying so).
2. **The list.** ``ai/data/critical_findings.json`` (or the site's copy, setting
   ``RADIANT_TRIAGE_CRITICAL_LIST``) names findings in the ACR actionable findings categories
   (Larson et al., JACR 2014: category 1 -> ``critical``, category 2 -> ``urgent``) with English
   and French terms. English terms are found with the hedging classifier's ConText
   (:func:`ai.hedging.mentions`): a negated, hypothetical, historical or family mention ("No
   pneumothorax.") never counts, an uncertain one ("may represent a subdural haematoma") does.
   French terms are read with the list's French negation cues.

The result (:class:`UrgencyAssessment`) is model output like the rest: it is built inside the
safety layer (:func:`ai.safety.apply_safety`), the model's reason is hedged, and it stays
UNVERIFIED until a radiologist confirms or clears it.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ai.hedging import mentions
from ai.lexicon import normalize

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span

Urgency = Literal["routine", "urgent", "critical"]
LEVELS: tuple[Urgency, ...] = ("routine", "urgent", "critical")
RANK: dict[str, int] = {level: rank for rank, level in enumerate(LEVELS)}
DEFAULT_LIST_PATH = Path(__file__).parent / "data" / "critical_findings.json"


def higher(a: Urgency, b: Urgency) -> Urgency:
    """The more urgent of two levels."""
    return a if RANK[a] >= RANK[b] else b


class CriticalListError(ValueError):
    """The critical findings file is missing or malformed (the message names what is wrong)."""


@dataclass(frozen=True, slots=True)
class CriticalEntry:
    """One finding of the list: its id, level and terms per language."""

    id: str
    urgency: Urgency
    acr_category: int | None
    label: dict[str, str]
    terms: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True, eq=False)
class CriticalList:
    """The loaded list and the French negation cues (``forward``: before the term). Compared
    and hashed by identity (one object per loaded file version, see :func:`load_critical_list`)."""

    entries: tuple[CriticalEntry, ...]
    negation_fr_forward: tuple[str, ...]
    negation_fr_backward: tuple[str, ...]
    source: str


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CriticalListError(f"{where} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def parse_critical_list(data: Any, source: str = "<data>") -> CriticalList:
    """Check and load the list's JSON document; :class:`CriticalListError` names the fault."""
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        raise CriticalListError(f"{source}: expected an object with a 'findings' list")
    entries: list[CriticalEntry] = []
    seen: set[str] = set()
    for position, item in enumerate(data["findings"], start=1):
        where = f"{source}: finding {position}"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise CriticalListError(f"{where} needs an 'id'")
        if item["id"] in seen:
            raise CriticalListError(f"{where}: id {item['id']!r} is listed twice")
        seen.add(item["id"])
        level = item.get("urgency")
        if level not in ("urgent", "critical"):
            raise CriticalListError(f"{where}: 'urgency' must be 'critical' or 'urgent'")
        terms = {lang: _strings(item.get(lang, []), f"{where} '{lang}'") for lang in ("en", "fr")}
        if not terms["en"] and not terms["fr"]:
            raise CriticalListError(f"{where} has no 'en' or 'fr' terms")
        label = item.get("label") or {}
        if not isinstance(label, dict):
            raise CriticalListError(f"{where}: 'label' must map a language to a text")
        labels = {lang: str(label.get(lang) or (terms[lang] or terms["en"])[0]) for lang in terms}
        category = item.get("acr_category")
        entries.append(
            CriticalEntry(
                id=item["id"],
                urgency=level,
                acr_category=category if isinstance(category, int) else None,
                label=labels,
                terms=terms,
            )
        )
    cues = data.get("negation_fr") or {}
    if not isinstance(cues, dict):
        raise CriticalListError(f"{source}: 'negation_fr' must hold 'forward' and 'backward'")
    return CriticalList(
        entries=tuple(entries),
        negation_fr_forward=_strings(cues.get("forward", []), f"{source}: negation_fr.forward"),
        negation_fr_backward=_strings(cues.get("backward", []), f"{source}: negation_fr.backward"),
        source=source,
    )


def load_critical_list(path: Path | None = None) -> CriticalList:
    """The list at ``path`` (the packaged one when None), re-read when the file changes."""
    chosen = path or DEFAULT_LIST_PATH
    try:
        stamp = chosen.stat().st_mtime_ns
    except OSError as exc:
        raise CriticalListError(
            f"{chosen}: cannot read the critical findings list ({exc})"
        ) from None
    return _load_cached(str(chosen), stamp)


@lru_cache(maxsize=8)
def _load_cached(path: str, stamp: int) -> CriticalList:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CriticalListError(f"{path}: not a readable JSON file ({exc})") from None
    return parse_critical_list(data, path)


# --- matching -------------------------------------------------------------------------------


def _fold(word: str) -> str:
    """Case-, accent- and spelling-insensitive form of one token (both languages)."""
    bare = "".join(
        ch for ch in unicodedata.normalize("NFKD", word) if not unicodedata.combining(ch)
    )
    return normalize(bare.replace("\u0153", "oe").replace("\u00e6", "ae"))


@dataclass(frozen=True, slots=True)
class ListMatch:
    """A list term found present in one text of the analysis."""

    finding_id: str
    urgency: Urgency
    term: str
    where: str
    sentence: str
    uncertain: bool


def _term_index(
    nlp: Language, entries: Iterable[CriticalEntry], lang: str
) -> dict[tuple[str, ...], str]:
    index: dict[tuple[str, ...], str] = {}
    for entry in entries:
        for term in entry.terms[lang]:
            key = tuple(_fold(t.text) for t in nlp.make_doc(term))
            index.setdefault(key, entry.id)
    return index


def _spans(doc: Doc, index: dict[tuple[str, ...], str]) -> list[Span]:
    """Longest non-overlapping list terms in ``doc``, labelled with the finding id."""
    from spacy.tokens import Span

    longest = max((len(key) for key in index), default=0)
    folded = [_fold(token.text) for token in doc]
    spans: list[Span] = []
    position = 0
    while position < len(doc):
        for size in range(min(longest, len(doc) - position), 0, -1):
            found = index.get(tuple(folded[position : position + size]))
            if found is not None:
                spans.append(Span(doc, position, position + size, label=found))
                position += size
                break
        else:
            position += 1
    return spans


class _French:
    """spaCy blank French (tokenizer only) + sentencizer + ConText with the list's cues."""

    def __init__(self, critical: CriticalList) -> None:
        import spacy
        from medspacy.context import ConText, ConTextRule

        self.nlp = spacy.blank("fr")
        self.sentencizer = self.nlp.add_pipe("sentencizer")
        self.context = ConText(self.nlp, rules=None)
        rules = [
            ConTextRule(cue, "NEGATED_EXISTENCE", pattern=self._pattern(cue), direction=way)
            for way, cues in (
                ("FORWARD", critical.negation_fr_forward),
                ("BACKWARD", critical.negation_fr_backward),
            )
            for cue in cues
        ]
        rules.append(ConTextRule("mais", "TERMINATE", direction="TERMINATE"))
        self.context.add(rules)
        self.index = _term_index(self.nlp, critical.entries, "fr")
        self.lock = threading.Lock()

    def _pattern(self, cue: str) -> list[dict[str, Any]]:
        """Token pattern of a cue as the tokenizer splits it inside a sentence (an elided
        "d'" at the end of a cue is one token before a word, not "d" and "'")."""
        elided = cue.endswith(("'", "\u2019"))
        tokens = [t.lower_ for t in self.nlp.make_doc(cue + "x" if elided else cue)]
        if elided:
            tokens = tokens[:-1]
        return [{"LOWER": token} for token in tokens]

    def read(self, text: str) -> list[tuple[str, int, int, str, bool]]:
        """(finding id, start, end, sentence, negated) for each list term in ``text``."""
        with self.lock:
            doc = self.sentencizer(self.nlp.make_doc(text))
            doc.ents = _spans(doc, self.index)
            done = self.context(doc)
            return [
                (e.label_, e.start_char, e.end_char, e.sent.text, bool(e._.is_negated))
                for e in done.ents
            ]


@lru_cache(maxsize=4)
def _french(critical: CriticalList) -> _French:
    return _French(critical)


@lru_cache(maxsize=4)
def _english_index(critical: CriticalList) -> dict[tuple[str, ...], str]:
    from ai.hedging import analyser

    return _term_index(analyser().nlp, critical.entries, "en")


def match_critical(texts: Sequence[tuple[str, str]], critical: CriticalList) -> list[ListMatch]:
    """List terms present in ``texts`` (pairs of where, text), at most one match per finding
    id and text. Negated, hypothetical, historical and family mentions are left out."""
    levels = {entry.id: entry.urgency for entry in critical.entries}
    english = _english_index(critical)
    found: list[ListMatch] = []
    for where, text in texts:
        if not text or not text.strip():
            continue
        # (finding id, start, end, sentence, present, uncertain) read in both languages; a
        # term both readings find counts only if neither reads it negated (or historical...).
        readings = [
            (m.label, m.start, m.end, m.sentence, m.present, m.uncertain)
            for m in mentions(text, lambda doc: _spans(doc, english))
        ]
        readings += [
            (fid, start, end, sentence, not negated, False)
            for fid, start, end, sentence, negated in _french(critical).read(text)
        ]
        absent = [r for r in readings if not r[4]]
        kept = [
            r for r in readings if r[4] and not any(a[1] < r[2] and r[1] < a[2] for a in absent)
        ]
        kept.sort(key=lambda r: (r[1], -(r[2] - r[1])))
        hits: dict[str, ListMatch] = {}
        covered: list[tuple[int, int]] = []
        for fid, start, end, sentence, _present, uncertain in kept:
            if any(a < end and start < b for a, b in covered):
                continue  # inside a longer term found first ("tension pneumothorax")
            covered.append((start, end))
            if fid not in hits:
                hits[fid] = ListMatch(fid, levels[fid], text[start:end], where, sentence, uncertain)
        found.extend(hits.values())
    return found


# --- the assessment ---------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UrgencyMatch(_Frozen):
    """One list finding present in the analysis' text (for the screen and the audit)."""

    finding_id: str
    urgency: Urgency
    label_en: str
    label_fr: str
    term: str
    where: str


class UrgencyAssessment(_Frozen):
    """The study-level urgency of one answer: the higher of the model's and the list's.

    ``model_flag`` is ``absent`` or ``invalid`` when the model gave no usable urgency (then
    ``model_level`` is ``routine``). ``model_reason`` is already hedged; ``reasons`` are the
    English lines stored with the analysis (the screens rebuild them per language)."""

    level: Urgency
    model_level: Urgency
    model_reason: str | None
    model_flag: str | None
    list_level: Urgency
    matches: tuple[UrgencyMatch, ...]
    reasons: tuple[str, ...]
    list_source: str


def assess(
    model_level: Urgency,
    model_reason: str | None,
    model_flag: str | None,
    texts: Sequence[tuple[str, str]],
    critical: CriticalList,
) -> UrgencyAssessment:
    """Combine the model's (already hedged) urgency with the list matches on ``texts``."""
    entries = {entry.id: entry for entry in critical.entries}
    matches = match_critical(texts, critical)
    list_level: Urgency = "routine"
    for match in matches:
        list_level = higher(list_level, match.urgency)
    reasons: list[str] = []
    if model_level != "routine":
        reasons.append(f"Model: {model_level}" + (f" ({model_reason})" if model_reason else ""))
    for match in matches:
        label = entries[match.finding_id].label["en"]
        reasons.append(f"Critical findings list: possible {label} named in the {match.where}")
    return UrgencyAssessment(
        level=higher(model_level, list_level),
        model_level=model_level,
        model_reason=model_reason,
        model_flag=model_flag,
        list_level=list_level,
        matches=tuple(
            UrgencyMatch(
                finding_id=m.finding_id,
                urgency=m.urgency,
                label_en=entries[m.finding_id].label["en"],
                label_fr=entries[m.finding_id].label["fr"],
                term=m.term,
                where=m.where,
            )
            for m in matches
        ),
        reasons=tuple(reasons),
        list_source=critical.source,
    )
