"""Hedged rewordings of a sentence that asserts a disorder (used by :mod:`ai.hedging`).

Token-level edits over the spaCy tokens of the sentence, in order of preference:

- a verb of proof becomes a hedged verb ("confirms" -> "suggests", "represents" -> "may
  represent", "diagnostic of" -> "suggestive of"); certainty adverbs ("definitely") are dropped;
- a copula or "has" gets a modal ("is" -> "may be", "was" -> "may have been", "has" -> "may have");
- a verb of showing gets "findings suggestive of" ("CT shows findings suggestive of ...");
- a bare noun phrase, the usual impression form, gets the lead "Findings suggestive of";
- otherwise "possible" goes before the noun phrase of the first asserted disorder.

:mod:`ai.hedging` keeps the first candidate that its classifier no longer finds assertive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ai.lexicon import Lexicon

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span

#: Words stating certainty: dropped from a sentence that asserts a disorder before hedging it.
_CERTAINTY = frozenset(
    {
        "definitely",
        "certainly",
        "clearly",
        "unequivocally",
        "undoubtedly",
        "obviously",
        "definite",
        "unequivocal",
        "unmistakably",
        "conclusively",
        "definitively",
    }
)
#: Verbs of proof replaced by the hedged verb of the same number and tense.
_VERB_SWAP = {
    "confirms": "suggests",
    "confirm": "suggest",
    "proves": "suggests",
    "prove": "suggest",
    "indicates": "suggests",
    "indicate": "suggest",
    "establishes": "suggests",
    "represents": "may represent",
    "represent": "may represent",
    "confirmed": "suspected",
    "proven": "suspected",
    "proved": "suspected",
    "diagnostic": "suggestive",
    "pathognomonic": "suggestive",
    "characteristic": "suggestive",
    "typical": "suggestive",
}
_COPULA = {
    "is": "may be",
    "are": "may be",
    "was": "may have been",
    "were": "may have been",
    "has": "may have",
    "have": "may have",
    "'s": "may be",
}
_SHOWING = frozenset(
    {
        "shows",
        "show",
        "demonstrates",
        "demonstrate",
        "reveals",
        "reveal",
        "depicts",
        "depict",
        "displays",
        "display",
        "exhibits",
        "exhibit",
        "showed",
        "demonstrated",
        "revealed",
    }
)
#: Finite verbs of report prose: a sentence with one is a statement, not a bare noun phrase.
_FINITE = _SHOWING | frozenset(
    {
        "measures",
        "measure",
        "involves",
        "involve",
        "extends",
        "extend",
        "abuts",
        "abut",
        "compresses",
        "compress",
        "causes",
        "cause",
        "contains",
        "contain",
        "surrounds",
        "occupies",
        "arises",
        "arise",
        "encases",
        "encase",
        "displaces",
        "displace",
        "narrows",
        "narrow",
        "occludes",
        "occlude",
        "obstructs",
        "obstruct",
        "crosses",
        "cross",
        "results",
        "persists",
        "persist",
        "remains",
        "remain",
        "appears",
        "appear",
        "seems",
        "enhances",
        "enhance",
        "affects",
        "affect",
        "spares",
        "spare",
        "courses",
        "projects",
        "lies",
        "lie",
        "effaces",
        "efface",
        "infiltrates",
        "infiltrate",
        "invades",
        "invade",
        "erodes",
        "erode",
        "fills",
        "fill",
        "expands",
        "expand",
        "involved",
        "extended",
        "caused",
        "can",
        "will",
        "would",
        "shall",
        "must",
        "does",
        "do",
        "did",
        "had",
        "been",
        "be",
        "being",
        "exists",
        "exist",
        "occurs",
        "occur",
        "accounts",
        "explains",
        "explain",
        "produces",
        "produce",
        "reaches",
        "replaces",
        "replace",
        "distends",
        "distend",
        "dilates",
        "obliterates",
        "obliterate",
    }
)
#: Words that end a noun phrase on its left: where "possible" goes in.
_NP_STOP = frozenset(
    {
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "its",
        "their",
        "his",
        "her",
        "of",
        "in",
        "on",
        "at",
        "with",
        "within",
        "without",
        "from",
        "to",
        "and",
        "or",
        "by",
        "for",
        "into",
        "along",
        "over",
        "under",
        "near",
        "there",
        "which",
        "who",
        "also",
        "as",
        "than",
        "is",
        "are",
        "was",
        "were",
        "has",
        "have",
        "be",
        "been",
        "any",
        "some",
        "multiple",
        "several",
        "two",
        "three",
        "both",
        "each",
        "another",
        "other",
        "one",
        "no",
        "not",
    }
    | _FINITE
)
QUOTES = frozenset('"\u201c\u201d\u2018\u2019')
_LEAD = "Findings suggestive of "


def _lower_first(doc: Doc, lexicon: Lexicon) -> str:
    """The sentence with an ordinary leading capital lowered (acronyms and eponyms kept)."""
    text = doc.text
    word = doc[0].text
    if (word.isupper() and len(word) > 1) or word[1:] != word[1:].lower():
        return text
    if word.removesuffix("'s") in lexicon.eponyms:
        return text
    return text[:1].lower() + text[1:]


def _join(doc: Doc, replace: dict[int, str], drop: set[int]) -> str:
    parts: list[str] = []
    for token in doc:
        if token.i in drop:
            continue
        parts.append(replace.get(token.i, token.text) + token.whitespace_)
    text = "".join(parts)
    return text[:1].upper() + text[1:] if doc.text[:1].isupper() else text


def candidates(
    doc: Doc, lexicon: Lexicon, first: Span | None, analyse: Callable[[str], Doc]
) -> list[str]:
    """Hedged rewordings of one sentence, most natural first; ``first`` is its first asserted
    disorder mention (where "possible" goes in), ``analyse`` tokenizes a new sentence."""
    drop = {t.i for t in doc if t.lower_ in _CERTAINTY}
    swap = {t.i: _VERB_SWAP[t.lower_] for t in doc if t.lower_ in _VERB_SWAP}
    found: list[str] = []
    if swap:
        found.append(_join(doc, swap, drop))
    lowered = {t.lower_ for t in doc}
    copula = next((t for t in doc if t.lower_ in _COPULA and t.i not in swap), None)
    if copula is not None:
        prior = doc[copula.i - 1].lower_ if copula.i else ""
        if prior not in {"which", "that", "who"}:
            found.append(_join(doc, {**swap, copula.i: _COPULA[copula.lower_]}, drop))
    showing = next((t for t in doc if t.lower_ in _SHOWING), None)
    if showing is not None:
        found.append(_join(doc, {showing.i: f"{showing.text} findings suggestive of"}, drop))
    if not lowered & _FINITE and copula is None and not swap:
        body = _join(doc, {}, drop) if drop else doc.text
        lead = _LEAD if body[:1].isupper() else _LEAD.lower()
        found.append(lead + _lower_first(analyse(body), lexicon))
    if first is not None:
        start = first.start
        while start > 0 and doc[start - 1].is_alpha and doc[start - 1].lower_ not in _NP_STOP:
            start -= 1
        head = doc[start]
        if start == 0:
            word = _lower_first(doc[start:].as_doc(), lexicon)[: len(head.text)]
            possible = "Possible " if head.text[:1].isupper() else "possible "
            found.append(_join(doc, {start: possible + word}, drop))
        else:
            found.append(_join(doc, {start: "possible " + head.text}, drop))
    return found
