"""Disorder lexicon for the hedging classifier, derived from ICD-10-CM (public domain).

``build_icd_lexicon`` reads the ICD-10-CM tabular list shipped by ``simple-icd-10-cm`` (a build
and test dependency) and keeps the chapters that classify disorders: A00-Q99 and S00-T88. The
chapters of symptoms, signs and abnormal findings (R), of external causes (V-Y), of factors
influencing health status (Z) and the special codes (U) are left out: a nodule, a mass or an
opacity is an imaging finding there, not a diagnosis. From each description and inclusion term
the head phrase (the words before "of", "with", "due to", a comma, ...) is taken; its last word is
a disorder head ("appendicitis", "embolism", "fracture"), the whole phrase a disorder term.
Capitalised words inside descriptions are eponyms ("Crohn", "Hodgkin"): they keep their capital.

A head must be the last word of more head phrases than it is a modifier inside one ("thoracic")
or the last word of an anatomical place ("fracture of femur"): that keeps nouns naming a disorder.
The result is written to ``ai/data/disorder_lexicon.json`` (``python -m ai.lexicon``); a unit test
rebuilds it and compares. :func:`load_lexicon` merges it with the curated radiology additions
and exclusions of ``ai/data/radiology_lexicon.json`` (see its ``_source`` notes).
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
ICD_LEXICON_PATH = DATA / "disorder_lexicon.json"
CURATED_LEXICON_PATH = DATA / "radiology_lexicon.json"

#: First letters of the ICD-10-CM chapters that classify disorders (diseases, neoplasms,
#: congenital malformations, injuries, poisonings and complications).
DISORDER_CHAPTER_LETTERS = frozenset("ABCDEFGHIJKLMNOPQST")
_CUT = re.compile(
    r",|;|\(|\)|\[|:| - |\b(?:of|with|without|due|in|and|or|following|complicating|by|for|on|at|"
    r"from|to|not|nos|unspecified|involving|affecting|associated|classified|as|than|other|"
    r"into|during|after|except|specified|use|the|a|an)\b"
)
#: The last word of an anatomical place: "fracture of [the left] femur", "neoplasm of lung".
_PLACE = re.compile(r"\b(?:of|in)\s+(?:[a-z-]+\s+){0,3}?([a-z-]+)(?=\s*(?:,|$|\band\b|\bor\b|\())")
_ROMAN = re.compile(r"[ivx]+[ab]?")
_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")


def normalize(word: str) -> str:
    """Lower-case American spelling, singular: the form lexicon entries are stored in."""
    word = word.lower().replace("\u2019", "'")
    for british, american in (
        ("haem", "hem"),
        ("oedem", "edem"),
        ("oesoph", "esoph"),
        ("tumour", "tumor"),
        ("aemia", "emia"),
        ("foetal", "fetal"),
        ("ischaem", "ischem"),
        ("leukaem", "leukem"),
        ("diarrhoea", "diarrhea"),
    ):
        word = word.replace(british, american)
    if word.endswith("'s"):
        word = word[:-2]
    return singular(word)


def singular(word: str) -> str:
    """A plural's singular by the regular English and Latin/Greek medical endings."""
    if len(word) <= 4:
        return word
    for plural, single in (("ases", "asis"), ("oses", "osis")):
        if word.endswith(plural):
            return word[: -len(plural)] + single
    if word.endswith("ae"):
        return word[:-1]
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("i") and word[-2:] in ("li", "ri", "ci", "gi"):
        return word[:-1] + "us"
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "ys")):
        return word[:-1]
    return word


def _head_phrase(text: str) -> list[str]:
    lowered = text.lower()
    first = _CUT.split(lowered, maxsplit=1)[0]
    return [normalize(w) for w in _WORD.findall(first)]


def build_icd_lexicon() -> dict[str, list[str]]:
    """Disorder heads, multi-word terms and eponyms from ICD-10-CM (needs simple-icd-10-cm)."""
    with warnings.catch_warnings():  # it reads its data with deprecated importlib calls
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm as cm  # build-time only

        cm.get_all_codes(False)

    head_count: Counter[str] = Counter()
    place_count: Counter[str] = Counter()
    modifier_count: Counter[str] = Counter()
    terms: set[str] = set()
    eponyms: set[str] = set()
    for code in cm.get_all_codes(False):
        if code[:1] not in DISORDER_CHAPTER_LETTERS or cm.is_chapter_or_block(code):
            continue
        texts = [cm.get_description(code), *cm.get_inclusion_term(code)]
        for text in texts:
            words = _head_phrase(text)
            if words:
                head_count[words[-1]] += 1
                modifier_count.update(words[:-1])
                if len(words) > 1:
                    terms.add(" ".join(words))
            for place in _PLACE.findall(text.lower()):
                place_count[normalize(place)] += 1
            eponyms.update(re.findall(r"\b([A-Z][a-z]{2,})'s\b", text))
            eponyms.update(re.findall(r"(?<=\s)([A-Z][a-z]{2,})\b", text))
    heads = {
        word
        for word, count in head_count.items()
        if len(word) > 2
        and count > place_count[word]
        and count > modifier_count[word]
        and not _ROMAN.fullmatch(word)
    }
    return {
        "heads": sorted(heads),
        "terms": sorted(terms),
        "eponyms": sorted(eponyms),
    }


#: Words ending in "-oma" that are not tumours.
_NOT_OMA = frozenset({"stoma", "soma", "aroma", "diploma", "chroma", "rhizoma"})


@dataclass(frozen=True, slots=True)
class Lexicon:
    """What the classifier matches: single-word heads, multi-word terms, adjectives, acronyms."""

    heads: frozenset[str]
    terms: frozenset[tuple[str, ...]]
    adjectives: frozenset[str]
    acronyms: frozenset[str]
    eponyms: frozenset[str]
    max_term_words: int

    def is_disorder_word(self, word: str) -> bool:
        """A normalized word naming a disorder: a head, an "-itis"/"-oma" word, or a compound
        ending in a head of six letters or more ("macroadenoma", "bronchopneumonia")."""
        if word in self.heads:
            return len(word) > 3
        if len(word) < 6 or not word.isalpha():
            return False
        if word.endswith("itis") or (word.endswith("oma") and word not in _NOT_OMA):
            return True
        return any(word[cut:] in self.heads for cut in range(3, len(word) - 5))


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """The ICD-10-CM lexicon with the curated radiology additions and exclusions applied."""
    icd = json.loads(ICD_LEXICON_PATH.read_text(encoding="utf-8"))
    curated = json.loads(CURATED_LEXICON_PATH.read_text(encoding="utf-8"))
    excluded = {normalize(word) for word in curated["not_disorder_heads"]}
    heads = {normalize(word) for word in icd["heads"]} - excluded
    heads |= {normalize(word) for word in curated["disorder_heads"]}
    terms = {tuple(term.split()) for term in icd["terms"]}
    terms = {term for term in terms if term[-1] in heads}
    terms |= {tuple(normalize(w) for w in term.split()) for term in curated["disorder_terms"]}
    return Lexicon(
        heads=frozenset(heads),
        terms=frozenset(terms),
        adjectives=frozenset(word.lower() for word in curated["disorder_adjectives"]),
        acronyms=frozenset(curated["disorder_acronyms"]),
        eponyms=frozenset(icd["eponyms"]),
        max_term_words=max((len(term) for term in terms), default=1),
    )


def main() -> None:
    """Rebuild ``ai/data/disorder_lexicon.json`` from the installed ICD-10-CM release."""
    data = build_icd_lexicon()
    data_with_source = {
        "_source": "ICD-10-CM tabular list (public domain, CDC/NCHS) via simple-icd-10-cm; "
        "chapters A00-Q99 and S00-T88; generated by `python -m ai.lexicon`",
        **data,
    }
    ICD_LEXICON_PATH.write_text(json.dumps(data_with_source, indent=0) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
