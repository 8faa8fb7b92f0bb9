"""Hedging enforcer: definitive diagnostic wording in model text becomes hedged wording.

Each sentence is checked for definitive phrases ("confirms", "definitely", "is malignant",
"pathognomonic", "this is a ...", "represents", ...). A phrase is rewritten to a hedged form
("suggests", "possibly", "may be malignant", "suggestive of", "may represent") unless a rewrite
would change what the sentence means; then the whole sentence is left exactly as written and
FLAGGED for the reviewer with the reason:

- ``quotation``: the phrase is inside quotes (quoted history, quoted indication);
- ``history``: it reports an earlier confirmation ("biopsy-proven", "confirmed on the prior");
- ``recommendation``: it is advice or a condition ("confirm with biopsy", "to be confirmed");
- ``negation``: its clause is negated ("definitely no fracture");
- ``measurement``: it qualifies a number ("definitely measures 12 mm");
- ``definitive_negative``: a definitive exclusion that cannot be hedged without changing its
  meaning ("rules out", "excludes", "is not malignant", "is benign");
- ``sentence_flagged``: another phrase of the same sentence was flagged, so none was rewritten.

Phrases that are already uncertain ("cannot be excluded", "not confirmed", "differential
diagnosis of") are not triggers at all. Everything else in the text is kept byte for byte.

This is pattern matching over English report wording, proven by ``ai/data/hedging_corpus.json``.
In free text it cannot catch every definitive sentence (e.g. "Pneumonia." alone); impressions,
where a diagnosis is named, go through :func:`hedge_impression`, which leaves no sentence there
unhedged and unflagged. Every result stays UNVERIFIED until a radiologist signs it.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

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
    "quotation": "inside quoted text; quoted words are never rewritten",
    "history": "reports an earlier confirmation (history); hedging it would misstate the record",
    "recommendation": "a recommendation or condition; hedging it would change the advice",
    "negation": "in a negated clause; hedging it would invert or blur the negation",
    "measurement": "qualifies a number or measurement; hedging it would blur the value",
    "definitive_negative": "a definitive exclusion; it cannot be hedged without changing meaning",
    "sentence_flagged": "left unchanged because another phrase of this sentence was flagged",
    "unhedged_statement": "a statement with no hedge that could not be rewritten safely",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HedgeChange(_Frozen):
    """One rewrite: the model's phrase, what replaced it, and the original sentence."""

    original: str
    replacement: str
    sentence: str


class HedgeFlag(_Frozen):
    """One phrase left as written for the reviewer, with the reason and the sentence."""

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
class _Rule:
    """A definitive phrase; ``replacement`` None means it can only be flagged."""

    pattern: re.Pattern[str]
    replacement: str | None
    not_after: re.Pattern[str] | None = None


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


#: Before a "confirm"/"definite" phrase, these make it an expression of doubt, not a claim.
_DOUBT_BEFORE = _rx(
    r"\b(?:cannot|can't|can\s+not|could\s+not|couldn't|not|unable\s+to|difficult\s+to|"
    r"no|without|hard\s+to)\s+(?:be\s+|been\s+|yet\s+)?(?:\w+ly\s+)?$"
)
#: Before "excluded"/"ruled out": doubt ("cannot be excluded") or advice ("to exclude").
_NOT_A_CLAIM_BEFORE = _rx(
    r"(?:\b(?:cannot|can't|can\s+not|could\s+not|couldn't|may\s+not|might\s+not|not|"
    r"unable\s+to|difficult\s+to|hard\s+to|does\s+not|doesn't|do\s+not|don't|did\s+not|"
    r"didn't)\s+(?:be\s+|been\s+)?(?:\w+ly\s+)?|\bto\s+(?:\w+ly\s+)?|\bto\s+be\s+)$"
)
#: Before "diagnosis of": already hedged or a list of possibilities.
_HEDGED_DIAGNOSIS_BEFORE = _rx(
    r"\b(?:possible|probable|likely|suspected|presumptive|presumed|differential|working|"
    r"provisional|tentative|favou?red|potential|(?:consistent|compatible)\s+with(?:\s+an?|\s+the)?|"
    r"suggestive\s+of(?:\s+an?|\s+the)?|in\s+keeping\s+with(?:\s+an?|\s+the)?|"
    r"suggests?(?:\s+an?|\s+the)?|raises?(?:\s+the)?\s+(?:question|possibility)\s+of(?:\s+an?|\s+the)?)\s+$"
)

#: Before "represents" / "this is a": a hedge or a certainty word (its own hit) in the words
#: just before means the phrase is already qualified; rewriting it would hedge twice.
_HEDGED_BEFORE = _rx(
    r"\b(?:may|might|could|would|possibly|possible|probably|probable|likely|perhaps|"
    r"certainly|definitely|definitively|undoubtedly|unequivocally|clearly|doubt|suspected|"
    r"suggest\w*|consistent|compatible)\b|\bto\s+$"
)
#: "This is a ...", "it is an ...": a pronoun asserting what a finding is.
_SUBJECT = r"(?:(?<=\bthis\s)|(?<=\bit\s)|(?<=\bwhich\s)|(?<=\bthat\s))"

_RULES: tuple[_Rule, ...] = (
    _Rule(_rx(r"\bconfirms\s+(?:the\s+|an?\s+)?diagnosis\s+of\b"), "is consistent with"),
    _Rule(_rx(r"\bconfirm\s+(?:the\s+|an?\s+)?diagnosis\s+of\b"), "are consistent with"),
    _Rule(_rx(r"\b(?:confirmed|definitive|certain)\s+diagnosis\s+of\b"), "possible diagnosis of"),
    _Rule(_rx(r"\bdiagnostic\s+(?:of|for)\b"), "suggestive of"),
    _Rule(_rx(r"\bdiagnosis\s+of\b"), "possible diagnosis of", _HEDGED_DIAGNOSIS_BEFORE),
    _Rule(_rx(r"\bconfirms\s+that\b"), "suggests that", _DOUBT_BEFORE),
    _Rule(_rx(r"\bconfirms\b"), "suggests", _DOUBT_BEFORE),
    _Rule(_rx(r"\bconfirm\b"), "suggest", _DOUBT_BEFORE),
    _Rule(_rx(r"\bconfirming\b"), "suggesting", _DOUBT_BEFORE),
    _Rule(_rx(r"\bconfirmed\b"), "suspected", _DOUBT_BEFORE),
    _Rule(_rx(r"\bthere\s+is\s+an?\s+malignant\b(?![-\w])"), "there is a possibly malignant"),
    _Rule(_rx(r"\bthere\s+is\s+(an?\s+)?(cancer|carcinoma|malignancy)\b"), r"there may be \1\2"),
    _Rule(_rx(r"\bis\s+a\s+malignant\b(?![-\w])"), "may represent a malignant"),
    _Rule(_rx(r"\bis\s+(an?\s+)?(cancer|carcinoma|malignancy)\b"), r"may represent \1\2"),
    _Rule(_rx(r"\b(?:is|are)\s+malignant\b(?![-\w])"), "may be malignant"),
    _Rule(_rx(_SUBJECT + r"is\s+(an?)\b"), r"may represent \1", _HEDGED_BEFORE),
    _Rule(_rx(r"\brepresents\b"), "may represent", _HEDGED_BEFORE),
    _Rule(_rx(r"\bdefinitive\s+(?:for|of)\b"), "suggestive of", _DOUBT_BEFORE),
    _Rule(_rx(r"\bdefinitively\b"), "possibly", _DOUBT_BEFORE),
    _Rule(_rx(r"\bdefinitely\b"), "possibly", _DOUBT_BEFORE),
    _Rule(_rx(r"\bdefinitive\b"), "possible", _DOUBT_BEFORE),
    _Rule(_rx(r"\bcertainly\b"), "possibly", _DOUBT_BEFORE),
    _Rule(_rx(r"\bundoubtedly\b"), "possibly"),
    _Rule(_rx(r"\bunequivocally\b"), "possibly", _DOUBT_BEFORE),
    _Rule(_rx(r"\bunequivocal\b"), "possible", _DOUBT_BEFORE),
    _Rule(_rx(r"\bthere\s+is\s+no\s+doubt\s+that\b"), "it is possible that"),
    _Rule(_rx(r"\bwithout\s+(?:a\s+|any\s+)?doubt\b"), "possibly"),
    _Rule(_rx(r"\bno\s+doubt\b(?!\s+(?:about|regarding|as\s+to))"), "possibly"),
    _Rule(_rx(r"\brules\s+in\b"), "suggests", _DOUBT_BEFORE),
    _Rule(_rx(r"\brule\s+in\b"), "suggest", _DOUBT_BEFORE),
    _Rule(_rx(r"\bruled\s+in\b"), "suspected", _DOUBT_BEFORE),
    _Rule(_rx(r"\bpathognomonic\s+(?:of|for)\b"), "suggestive of"),
    _Rule(_rx(r"\bpathognomonic\b"), "suggestive"),
    _Rule(_rx(r"\bproves\s+that\b"), "suggests that", _DOUBT_BEFORE),
    _Rule(_rx(r"\bproves\b"), "suggests", _DOUBT_BEFORE),
    _Rule(_rx(r"\bprove\b"), "suggest", _DOUBT_BEFORE),
    _Rule(_rx(r"\bproven\b"), "suspected", _DOUBT_BEFORE),
    # Definitive exclusions: flagged, never rewritten.
    _Rule(_rx(r"\brules?\s+out\b"), None, _NOT_A_CLAIM_BEFORE),
    _Rule(_rx(r"\bruled\s+out\b"), None, _NOT_A_CLAIM_BEFORE),
    _Rule(_rx(r"\bexclude[sd]?\b(?!\s+from\b)"), None, _NOT_A_CLAIM_BEFORE),
    _Rule(_rx(r"\b(?:is|are)\s+not\s+malignant\b"), None),
    _Rule(_rx(_SUBJECT + r"is\s+not\s+an?\b"), None),
    _Rule(_rx(r"\b(?:is|are)\s+not\s+(?:an?\s+)?(?:cancer|carcinoma|malignancy)\b"), None),
    _Rule(_rx(r"\b(?:is|are)\s+benign\b(?![-\w])"), None),
)

_SENTENCE_BREAK = re.compile(
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)(?<!\bapprox\.)(?<!\bDr\.)(?<!\bNo\.)(?<!\bca\.)"
    r"(?<=[.!?])\s+(?=[A-Z0-9\"\u201c(\[])|\n+"
)
_CLAUSE_BREAK = _rx(r"[;:,]|\s\u2014\s|\s-\s|\b(?:but|however|whereas|although|while)\b")
_QUOTED = re.compile(r"\"[^\"]*\"|\u201c[^\u201d]*\u201d|\u2018[^\u2019]*\u2019")
_NEGATION = _rx(
    r"\b(?:no|not|without|negative\s+for|absence\s+of|absent|neither|nor|never|none|cannot|"
    r"can't|isn't|aren't|wasn't|weren't|doesn't|don't|unlikely|exclude[sd]?|rules?\s+out|"
    r"ruled\s+out)\b"
)
_HISTORY_BEFORE = _rx(
    r"(?:\b(?:biopsy|histolog\w*|histopatholog\w*|patholog\w*|cytolog\w*|surgical\w*|tissue|"
    r"previously|known|prior|clinically|genetically|laboratory|lab)[\s-]+|\bhistory\s+of\s+|"
    r"\bh/o\s+|\bpatient\s+(?:has|had|with)\s+|\bin\s+a\s+patient\s+with\s+)(?:\w+[\s-]+)?$"
)
_HISTORY_AFTER = _rx(
    r"^\s+(?:by|on|at|in|at\s+the\s+time\s+of)\s+(?:the\s+|a\s+|an\s+)?(?:prior|previous|earlier|"
    r"biopsy|histolog\w*|patholog\w*|cytolog\w*|surgery|resection|operation)"
)
_ADVICE_BEFORE = _rx(
    r"\b(?:to|should|must|would|could|might|may|can|if|unless|whether|be|needs?|required)"
    r"\s+(?:\w+\s+)?$"
)
_ADVICE_IN_CLAUSE = _rx(
    r"\b(?:recommend\w*|advis\w*|consider\w*|correlat\w*|follow[- ]?up|further\s+"
    r"(?:evaluation|assessment|imaging|characteri[sz]ation)|suggested)\b"
)
_ADVICE_AFTER = _rx(
    r"^\s+(?:with|using|via|through)\s+(?:a\s+|an\s+|the\s+)?(?:biopsy|tissue|histolog\w*|"
    r"patholog\w*|ct|mri|mr|ultrasound|us|pet|follow|further|clinical|dedicated|repeat|contrast)"
)
#: Context rules anchored at a phrase look at most this many characters before it.
_LOOKBACK = 80
#: Clause-wide checks (negation, advice) look at most this many characters each side.
_CLAUSE_WINDOW = 300
_ARTICLE = re.compile(r"\b(a|an|A|An|AN)(\s+)$")
_NUMBER_AFTER = re.compile(r"^\W*(?:[A-Za-z]+\W+){0,2}[<>\u2264\u2265~]?\d")
_NUMBER_BEFORE = re.compile(r"\d(?:[.,]\d+)?\s*(?:mm|cm|m|ml|cc|hu|%|x)?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Hit:
    start: int
    end: int
    rule: _Rule
    order: int


def hedge_text(text: str) -> HedgeResult:
    """Rewrite definitive wording to hedged wording, sentence by sentence; flag the rest."""
    edits: list[tuple[int, int, str]] = []
    changes: list[HedgeChange] = []
    flags: list[HedgeFlag] = []
    for start, end in _sentences(text):
        sentence = text[start:end]
        hits = _hits(sentence)
        if not hits:
            continue
        context = _Sentence(sentence)
        reasons = [_flag_reason(context, hit) for hit in hits]
        flagged = any(reason is not None for reason in reasons)
        for hit, reason in zip(hits, reasons, strict=True):
            phrase = sentence[hit.start : hit.end]
            if flagged:
                why: FlagReason = reason or "sentence_flagged"
                flags.append(
                    HedgeFlag(
                        phrase=phrase, reason=why, detail=_FLAG_DETAIL[why], sentence=sentence
                    )
                )
                continue
            replacement = _replacement(sentence, hit)
            edits.append((start + hit.start, start + hit.end, replacement))
            changes.append(HedgeChange(original=phrase, replacement=replacement, sentence=sentence))
    return HedgeResult(text=_apply(text, edits), changes=tuple(changes), flags=tuple(flags))


#: Wording that already expresses uncertainty: an impression sentence with one of these is left
#: to :func:`hedge_text`'s rules.
_UNCERTAIN = _rx(
    r"\b(?:may|might|could|possibl\w*|probabl\w*|likely|perhaps|suggest\w*|suspect\w*|"
    r"suspicious|consistent\s+with|compatible\s+with|in\s+keeping\s+with|concern\w*|"
    r"question\s+of|differential|favou?r\w*|presum\w*|equivocal|indeterminate|uncertain|"
    r"cannot\s+be\s+(?:excluded|ruled\s+out)|not\s+excluded|raises?)\b|\?"
)
#: A verb in the sentence: it is a full statement, not a noun phrase ("Pneumonia.").
_VERB = _rx(
    r"\b(?:is|are|was|were|be|been|has|have|had|shows?|showed|demonstrates?|measures?|"
    r"appears?|seen|noted|identified|present|there|extends?|involves?|causes?|contains?)\b"
)
_LEAD = "Findings may represent "


def hedge_impression(text: str) -> HedgeResult:
    """:func:`hedge_text`, then every impression sentence that still carries no hedge:

    - a bare noun phrase ("Malignant brain tumour.") is prefixed "Findings may represent ...";
    - a negative one ("No acute abnormality.") is flagged ``definitive_negative``;
    - a full statement with no hedge ("There is a glioma.") is flagged
      ``unhedged_statement`` for the reviewer.

    Impressions are where a model names a diagnosis, so none passes as a plain assertion.
    """
    first = hedge_text(text)
    flagged_sentences = {flag.sentence for flag in first.flags}
    hedged = first.text
    edits: list[tuple[int, int, str]] = []
    changes = list(first.changes)
    flags = list(first.flags)
    for start, end in _sentences(hedged):
        sentence = hedged[start:end]
        body = sentence.strip()
        if not any(ch.isalpha() for ch in body) or _UNCERTAIN.search(body):
            continue
        if sentence in flagged_sentences:
            continue
        offset = start + (len(sentence) - len(sentence.lstrip()))
        if _NEGATION.search(body):
            flags.append(
                HedgeFlag(
                    phrase=body,
                    reason="definitive_negative",
                    detail=_FLAG_DETAIL["definitive_negative"],
                    sentence=sentence,
                )
            )
        elif _VERB.search(body):
            flags.append(
                HedgeFlag(
                    phrase=body,
                    reason="unhedged_statement",
                    detail=_FLAG_DETAIL["unhedged_statement"],
                    sentence=sentence,
                )
            )
        else:
            word = body.split(maxsplit=1)[0]
            # keep acronyms and names as written ("CT", "MRI"); lower an ordinary capital
            lead = body if word.isupper() or word[1:2].isupper() else body[:1].lower() + body[1:]
            replacement = _LEAD + lead
            edits.append((offset, offset + len(body), replacement))
            changes.append(HedgeChange(original=body, replacement=replacement, sentence=sentence))
    return HedgeResult(text=_apply(hedged, edits), changes=tuple(changes), flags=tuple(flags))


def _sentences(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_BREAK.finditer(text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _hits(sentence: str) -> list[_Hit]:
    found: list[_Hit] = []
    for order, rule in enumerate(_RULES):
        for match in rule.pattern.finditer(sentence):
            lead = sentence[max(0, match.start() - _LOOKBACK) : match.start()]
            if rule.not_after is not None and rule.not_after.search(lead):
                continue
            found.append(_Hit(match.start(), match.end(), rule, order))
    found.sort(key=lambda hit: (hit.start, -(hit.end - hit.start), hit.order))
    chosen: list[_Hit] = []
    for hit in found:
        if chosen and hit.start < chosen[-1].end:
            continue
        chosen.append(hit)
    return chosen


class _Sentence:
    """A sentence with its quoted spans and clause breaks, computed once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.quotes = [(m.start(), m.end()) for m in _QUOTED.finditer(text)]
        self.breaks = [(m.start(), m.end()) for m in _CLAUSE_BREAK.finditer(text)]
        self.break_starts = [start for start, _ in self.breaks]

    def clause(self, hit: _Hit) -> tuple[int, int]:
        """The clause around ``hit``, cut to ``_CLAUSE_WINDOW`` characters on each side."""
        start, end = 0, len(self.text)
        index = bisect.bisect_left(self.break_starts, hit.start)
        for _, break_end in reversed(self.breaks[:index]):
            if break_end <= hit.start:
                start = break_end
                break
        for break_start, _ in self.breaks[index:]:
            if break_start >= hit.end:
                end = break_start
                break
        return max(start, hit.start - _CLAUSE_WINDOW), min(end, hit.end + _CLAUSE_WINDOW)


def _flag_reason(sentence: _Sentence, hit: _Hit) -> FlagReason | None:
    """Why this phrase must not be rewritten, or None when a rewrite keeps the meaning."""
    if any(start <= hit.start and hit.end <= end for start, end in sentence.quotes):
        return "quotation"
    clause_start, clause_end = sentence.clause(hit)
    before = sentence.text[clause_start : hit.start]
    after = sentence.text[hit.end : clause_end]
    lead = before[-_LOOKBACK:]
    if hit.rule.replacement is not None and (
        _ADVICE_BEFORE.search(lead)
        or _ADVICE_IN_CLAUSE.search(before + " " + after)
        or _ADVICE_AFTER.search(after)
    ):
        return "recommendation"
    if _HISTORY_BEFORE.search(lead) or _HISTORY_AFTER.search(after):
        return "history"
    if hit.rule.replacement is None:
        return "definitive_negative"
    if _NEGATION.search(before) or _NEGATION.search(after):
        return "negation"
    if _NUMBER_AFTER.search(after) or _NUMBER_BEFORE.search(lead):
        return "measurement"
    return None


def _replacement(sentence: str, hit: _Hit) -> str:
    original = sentence[hit.start : hit.end]
    match = hit.rule.pattern.match(sentence, hit.start, hit.end)
    assert match is not None and hit.rule.replacement is not None
    replacement = re.sub(r"\s+", " ", match.expand(hit.rule.replacement))
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply the (non-overlapping) edits, fixing "a"/"an" right before each replacement."""
    pieces: list[str] = []
    position = 0
    for start, end, replacement in sorted(edits):
        head = text[position:start]
        article = _ARTICLE.search(text, max(position, start - 8), start)
        if article is not None:
            vowel = replacement[:1].lower() in "aeiou"
            word = article.group(1)
            fixed = ("an" if vowel else "a") if word.islower() else ("An" if vowel else "A")
            if word.isupper() and len(word) > 1:
                fixed = fixed.upper()
            cut = article.start(1) - position
            head = head[:cut] + fixed + article.group(2)
        pieces.append(head)
        pieces.append(replacement)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)
