"""Hedging: every model sentence that asserts a disorder without uncertainty is hedged or flagged.

One classifier (:func:`classify`) decides, per sentence:

1. **Does it name a disorder?** Tokens are matched against a disorder lexicon derived from
   ICD-10-CM's disorder chapters, with curated radiology additions and exclusions
   (:mod:`ai.lexicon`). Imaging findings (a nodule, a mass, an opacity: ICD-10-CM chapter R),
   sizes, positions, devices and anatomy are not disorders.
2. **Is it asserted?** medspaCy's ConText (Harkema et al. 2009) marks each disorder mention
   negated, uncertain, hypothetical, historical or about someone else, with its packaged English
   rules and the radiology hedges of ``ai/data/context_rules_radiology.json`` ("consistent with",
   "may represent", "cannot be excluded", ...). A mention with none of these is asserted.

:func:`hedge_text` leaves every sentence with no asserted disorder exactly as written (an
observation, a negation, an already hedged sentence). A sentence with one is rewritten into
hedged wording ("The mass is a meningioma." -> "The mass may be a meningioma."; "Acute
appendicitis." -> "Findings suggestive of acute appendicitis."); the rewrite is accepted only
when the classifier then finds no asserted disorder in it; otherwise the sentence is left as
written and flagged ``unhedged_statement`` for the reviewer. spaCy runs with a blank English
tokenizer (no statistical model, nothing downloaded), loaded once per process. Every result
stays UNVERIFIED until a radiologist signs it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from ai.lexicon import Lexicon, load_lexicon, normalize
from ai.rewording import QUOTES, candidates

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span

CONTEXT_RULES_PATH = Path(__file__).parent / "data" / "context_rules_radiology.json"

FlagReason = Literal[
    "quotation",
    "history",
    "recommendation",
    "negation",
    "measurement",
    "definitive_negative",
    "sentence_flagged",
    "unhedged_statement",
]

_FLAG_DETAIL: dict[FlagReason, str] = {
    "quotation": "names a disorder inside quoted text; quoted words are never rewritten",
    "history": "reports an earlier confirmation (history); hedging it would misstate the record",
    "recommendation": "a recommendation or condition; hedging it would change the advice",
    "negation": "in a negated clause; hedging it would invert or blur the negation",
    "measurement": "qualifies a number or measurement; hedging it would blur the value",
    "definitive_negative": "a definitive exclusion; it cannot be hedged without changing meaning",
    "sentence_flagged": "left unchanged because another phrase of this sentence was flagged",
    "unhedged_statement": "asserts a disorder without uncertainty and could not be reworded safely",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HedgeChange(_Frozen):
    """One rewrite: the model's sentence, its hedged wording, and the original sentence."""

    original: str
    replacement: str
    sentence: str


class HedgeFlag(_Frozen):
    """One sentence left as written for the reviewer: the disorder named, why, the sentence."""

    phrase: str
    reason: FlagReason
    detail: str
    sentence: str


class HedgeResult(_Frozen):
    """The hedged text with the list of rewrites and the list of flags."""

    text: str
    changes: tuple[HedgeChange, ...] = ()
    flags: tuple[HedgeFlag, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classifier's answer for one sentence."""

    disorders: tuple[str, ...]
    asserted: tuple[str, ...]

    @property
    def needs_hedge(self) -> bool:
        """True when a disorder is stated as a fact (not negated, uncertain, hypothetical...)."""
        return bool(self.asserted)


_UNASSERTED_ATTRS = ("is_negated", "is_uncertain", "is_hypothetical", "is_historical", "is_family")


class _Analyser:
    """spaCy blank English (tokenizer only) + sentencizer + disorder marks + medspaCy ConText."""

    def __init__(self) -> None:
        import spacy  # heavy: loaded once, on first use
        from medspacy.context import ConText, ConTextRule

        self.lexicon = load_lexicon()
        self.nlp = spacy.blank("en")
        self.sentencizer = self.nlp.add_pipe("sentencizer")
        self.context = ConText(self.nlp, rules=None)
        ours = json.loads(CONTEXT_RULES_PATH.read_text(encoding="utf-8"))["context_rules"]
        mine = {rule["literal"].lower() for rule in ours}
        packaged = json.loads(_packaged_rules_path().read_text(encoding="utf-8"))["context_rules"]
        rules = [r for r in packaged if r["literal"].lower() not in mine] + ours
        self.context.add(
            [
                ConTextRule(
                    r["literal"], r["category"], pattern=r.get("pattern"), direction=r["direction"]
                )
                for r in rules
            ]
        )
        self.lock = threading.Lock()

    def __call__(self, text: str) -> Doc:
        with self.lock:
            doc = self.sentencizer(self.nlp.make_doc(text))
            doc.ents = _disorder_spans(doc, self.lexicon)
            result: Doc = self.context(doc)
            return result


def _packaged_rules_path() -> Path:
    """medspaCy's packaged English ConText rules (installed next to the package)."""
    import medspacy

    return Path(medspacy.__file__).resolve().parents[1] / "resources" / "en" / "context_rules.json"


@lru_cache(maxsize=1)
def analyser() -> _Analyser:
    """The process-wide analyser (built on first use: about a second)."""
    return _Analyser()


def _disorder_spans(doc: Doc, lexicon: Lexicon) -> list[Span]:
    """Non-overlapping disorder mentions: the longest lexicon term at each token."""
    from spacy.tokens import Span

    norms = [normalize(token.text) for token in doc]
    spans: list[Span] = []
    index = 0
    while index < len(doc):
        found = 0
        for size in range(min(lexicon.max_term_words, len(doc) - index), 1, -1):
            if tuple(norms[index : index + size]) in lexicon.terms:
                found = size
                break
        token = doc[index]
        if not found and (
            lexicon.is_disorder_word(norms[index])
            or token.text in lexicon.acronyms
            or token.lower_ in lexicon.adjectives
        ):
            found = 1
        if found:
            spans.append(Span(doc, index, index + found, label="DISORDER"))
            index += found
        else:
            index += 1
    return spans


def _verdict(doc: Doc) -> Verdict:
    names = tuple(ent.text for ent in doc.ents)
    asserted = tuple(
        ent.text for ent in doc.ents if not any(getattr(ent._, a) for a in _UNASSERTED_ATTRS)
    )
    return Verdict(disorders=names, asserted=asserted)


def classify(sentence: str) -> Verdict:
    """Which disorders the sentence names, and which of them it asserts as fact."""
    return _verdict(analyser()(sentence))


def hedge_sentence(sentence: str) -> tuple[str, Verdict, bool]:
    """``(text, verdict, flagged)`` for one sentence: unchanged, hedged, or left and flagged."""
    engine = analyser()
    doc = engine(sentence)
    verdict = _verdict(doc)
    if not verdict.needs_hedge:
        return sentence, verdict, False
    if any(ch in QUOTES for ch in sentence):
        return sentence, verdict, True
    first = next((e for e in doc.ents if not any(getattr(e._, a) for a in _UNASSERTED_ATTRS)), None)
    for candidate in candidates(doc, engine.lexicon, first, engine):
        if not classify(candidate).needs_hedge:
            return candidate, verdict, False
    return sentence, verdict, True


_LINE = re.compile(r"[^\n]+")


def hedge_text(text: str) -> HedgeResult:
    """Hedge every sentence of ``text`` that asserts a disorder; the rest is kept byte for byte.

    A sentence that cannot be reworded safely (or is quoted) is left as written and flagged."""
    pieces: list[str] = []
    changes: list[HedgeChange] = []
    flags: list[HedgeFlag] = []
    position = 0
    for line in _LINE.finditer(text):
        pieces.append(text[position : line.start()])
        position = line.end()
        for sent in analyser()(line.group()).sents:
            raw = sent.text_with_ws
            core = raw.strip()
            if not core:
                pieces.append(raw)
                continue
            lead = raw[: len(raw) - len(raw.lstrip())]
            tail = raw[len(lead) + len(core) :]
            hedged, verdict, flagged = hedge_sentence(core)
            if flagged:
                reason: FlagReason = (
                    "quotation" if any(ch in QUOTES for ch in core) else "unhedged_statement"
                )
                flags.append(
                    HedgeFlag(
                        phrase=", ".join(verdict.asserted),
                        reason=reason,
                        detail=_FLAG_DETAIL[reason],
                        sentence=core,
                    )
                )
            elif hedged != core:
                changes.append(HedgeChange(original=core, replacement=hedged, sentence=core))
            pieces.append(lead + hedged + tail)
    pieces.append(text[position:])
    return HedgeResult(text="".join(pieces), changes=tuple(changes), flags=tuple(flags))


@dataclass(frozen=True, slots=True)
class Mention:
    """A phrase marked by a caller's span finder, with ConText's assertion status."""

    text: str
    start: int
    end: int
    sentence: str
    label: str
    negated: bool
    uncertain: bool
    hypothetical: bool
    historical: bool
    family: bool

    @property
    def present(self) -> bool:
        """Stated as (possibly) there now: not negated, hypothetical, historical or another's.
        An uncertain mention ("may represent ...") counts as present."""
        return not (self.negated or self.hypothetical or self.historical or self.family)


def mentions(text: str, find: Callable[[Doc], list[Span]]) -> list[Mention]:
    """ConText assertion status of the phrases ``find(doc)`` marks in ``text`` (in place of the
    disorder lexicon), with the same tokenizer, sentence splitter and rules as :func:`classify`.
    ``find`` returns non-overlapping spans of the doc it is given."""
    engine = analyser()
    with engine.lock:
        doc = engine.sentencizer(engine.nlp.make_doc(text))
        doc.ents = find(doc)
        done = engine.context(doc)
        return [
            Mention(
                text=ent.text,
                start=ent.start_char,
                end=ent.end_char,
                sentence=ent.sent.text,
                label=ent.label_,
                negated=bool(ent._.is_negated),
                uncertain=bool(ent._.is_uncertain),
                hypothetical=bool(ent._.is_hypothetical),
                historical=bool(ent._.is_historical),
                family=bool(ent._.is_family),
            )
            for ent in done.ents
        ]
