"""QIDO-RS query parameters (PS3.18 8.3.4 and 10.6) turned into the index's Study Root query.

Matching is the C-FIND matching of :mod:`appliance.dicom.query` (single values, ``*``/``?``
wildcards, UID lists, DA/TM ranges, ModalitiesInStudy). ``fuzzymatching=true`` makes person
name keys match when every word given starts a word of the name, case- and accent-insensitively.
Attributes the index cannot match are ignored and named in a ``Warning: 299`` header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from appliance.db.rows import escape_like
from appliance.dicom import query as q
from appliance.patients.service import fold

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1000  # a query without ``limit`` returns at most this many matches

# PS3.18 Tables 10.6.3-3, -4 and -5: attributes every match carries
REQUIRED: dict[q.Level, tuple[str, ...]] = {
    q.Level.STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    q.Level.SERIES: (
        "Modality",
        "SeriesDescription",
        "SeriesNumber",
        "SeriesInstanceUID",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "StudyInstanceUID",
    ),
    q.Level.IMAGE: (
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    ),
}
_CONTROL = frozenset({"limit", "offset", "includefield", "fuzzymatching", "orderby"})
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_PERSON = frozenset({"PatientName", "ReferringPhysicianName"})


class BadQuery(ValueError):
    """A query parameter that cannot be used (answered 400 with this text)."""


@dataclass
class Parsed:
    query: q.Query
    limit: int
    offset: int
    ignored: list[str] = field(default_factory=list)


def _keyword(name: str) -> str:
    if _TAG.fullmatch(name):
        keyword = keyword_for_tag(int(name, 16))
        if not keyword:
            raise BadQuery(f"{name} is not a tag of the DICOM dictionary")
        return keyword
    if tag_for_keyword(name) is None:
        raise BadQuery(f"{name[:64]} is neither a DICOM keyword nor a tag (ggggeeee)")
    return name


def _int(params: dict[str, list[str]], name: str, default: int, high: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise BadQuery(f"{name} must be a whole number") from None
    if not 0 <= value <= high:
        raise BadQuery(f"{name} must be between 0 and {high}")
    return value


def _put(identifier: Dataset, tag: int, value: str | None) -> None:
    """Matching values (ranges, wildcards) are not valid attribute values: no validation."""
    vr = dictionary_VR(tag).split(" or ")[0]  # "US or SS": returned empty, either will do
    try:
        identifier[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)
    except (TypeError, ValueError, OverflowError):
        raise BadQuery(f"{keyword_for_tag(tag) or tag} cannot hold {str(value)[:32]!r}") from None


def _fuzzy_words(value: str) -> list[str]:
    return [w for w in re.split(r"[\s^*?,=]+", fold(value)) if w]


def _include_fields(identifier: Dataset, level: q.Level, values: list[str]) -> None:
    """Return keys: the level's required ones plus ``includefield`` (PS3.18 8.3.4.3), empty."""
    wanted = list(REQUIRED[level])
    for value in values:
        for name in (v.strip() for v in value.split(",")):
            if name == "all":
                wanted += [k.keyword for k in q.KEYS.values() if k.level <= level]
            elif name:
                wanted.append(_keyword(name.split(".")[0]))
    for keyword in wanted:
        tag = tag_for_keyword(keyword)
        if tag is not None and keyword not in identifier:
            _put(identifier, tag, None)


def _match_keys(
    identifier: Dataset, level: q.Level, params: dict[str, list[str]], fuzzy: bool
) -> tuple[list[str], list[tuple[str, str]]]:
    """Matching keys (PS3.18 8.3.4.1) into ``identifier``; returns the parameters ignored
    (unknown, nested, or of a lower level) and the person names to match fuzzily."""
    ignored: list[str] = []
    fuzzy_names: list[tuple[str, str]] = []
    for name, values in params.items():
        if name in _CONTROL:
            continue
        keyword = _keyword(name.split(".")[0])
        if "." in name or keyword not in q.KEYS or q.KEYS[keyword].level > level:
            ignored.append(name)
            continue
        value = values[-1]
        if q.KEYS[keyword].kind in (q.Kind.UID, q.Kind.MODALITIES):
            value = "\\".join(v.strip() for v in re.split(r"[,\\]", value) if v.strip())
        if fuzzy and keyword in _PERSON and value.strip("* "):
            fuzzy_names.append((keyword, value))
            continue
        tag = tag_for_keyword(keyword)
        assert tag is not None
        _put(identifier, tag, value)
    return ignored, fuzzy_names


def parse(level: q.Level, items: Iterable[tuple[str, str]], scope: dict[str, str]) -> Parsed:
    """Build the query of one QIDO-RS request: ``items`` are the query parameters in order,
    ``scope`` the UIDs the path fixes (``StudyInstanceUID`` for ``/studies/{study}/series``)."""
    params: dict[str, list[str]] = {}
    for name, value in items:
        params.setdefault(name, []).append(value)
    fuzzy = params.get("fuzzymatching", ["false"])[-1].lower()
    if fuzzy not in ("true", "false"):
        raise BadQuery("fuzzymatching must be true or false")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level.name
    _include_fields(identifier, level, params.get("includefield", []))
    ignored, fuzzy_names = _match_keys(identifier, level, params, fuzzy == "true")
    for keyword, value in scope.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None
        _put(identifier, tag, value)
    try:
        query = q.parse_identifier(identifier)
    except q.QueryError as exc:
        raise BadQuery(exc.comment) from None
    for keyword, value in fuzzy_names:
        for word in _fuzzy_words(value):
            # each word starts a word of the folded name (PS3.18 8.3.4.1 fuzzy matching)
            column = "p.search_key" if keyword == "PatientName" else "lower(st.referring_physician)"
            query.where.append(f"(' ' || replace({column}, '^', ' ')) LIKE ? ESCAPE '\\'")
            query.params.append(f"% {escape_like(word)}%")
    return Parsed(
        query,
        limit=_int(params, "limit", DEFAULT_LIMIT, MAX_LIMIT),
        offset=_int(params, "offset", 0, 2**31),
        ignored=ignored,
    )
