"""Study Root Query/Retrieve matching over the index (PS3.4 Annex C), never over the files.

:func:`parse_identifier` turns a C-FIND/C-GET/C-MOVE Identifier into a :class:`Query` (or raises
:class:`QueryError` with the DIMSE status to answer); :func:`matches` yields each match's
elements and :func:`find` them as a response Identifier; :mod:`appliance.dicom.retrieval` lists
what a C-GET/C-MOVE sends.

Matching (PS3.4 C.2.2.2): an empty value (or ``*``) is universal matching; UIDs match a single
value or a backslash-separated list; text keys match a single value or, with ``*`` and ``?``,
wildcards (person names case-insensitively, everything else case-sensitively); dates and times
match a single value or a range (``a-b``, ``-b``, ``a-``, C.2.2.2.5). ``ModalitiesInStudy``
matches a study holding a series of any of the listed modalities. Keys of a level below the
query level are returned empty and not matched. Keys the index does not hold are returned
empty (zero length), as C.2.2.1.2 allows.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

# PS3.4 C.4.1.1.4 / C.4.2.1.5 / C.4.3.1.4 failure statuses of the Query/Retrieve services
IDENTIFIER_MISMATCH = 0xA900  # no or an unsupported QueryRetrieveLevel for Study Root
UNABLE_TO_PROCESS = 0xC000  # an Identifier that cannot be decoded or holds an invalid value
ERROR_COMMENT_MAX = 64  # Error Comment (0000,0902) is LO: at most 64 characters (PS3.5 6.2)
NO_PATIENT_ID_PREFIX = "NOID-"  # MRNs the ingest invents when an instance has no PatientID


class Level(enum.IntEnum):
    """Study Root information model levels (PS3.4 C.6.2), outermost first."""

    STUDY = 1
    SERIES = 2
    IMAGE = 3


class Kind(enum.Enum):
    TEXT = "text"  # single value or wildcard, case-sensitive
    NAME = "name"  # PN: single value or wildcard, case-insensitive
    UID = "uid"  # single value or list (PS3.4 C.2.2.2.2)
    DATE = "date"  # DA: single value or range
    TIME = "time"  # TM: single value or range
    NUMBER = "number"  # IS/US: single value
    MODALITIES = "modalities"  # ModalitiesInStudy: any of the listed modalities
    RETURN_ONLY = "return"  # counts: never matched, only returned


@dataclass(frozen=True)
class Key:
    """A key the index can match and return: its level, SQL expression and matching kind."""

    keyword: str
    level: Level
    sql: str
    kind: Kind


_NAME = "rtrim(coalesce(p.last_name, '') || '^' || coalesce(p.first_name, ''), '^')"
_MRN = f"CASE WHEN p.mrn LIKE '{NO_PATIENT_ID_PREFIX}%' THEN '' ELSE p.mrn END"
KEYS: dict[str, Key] = {
    k.keyword: k
    for k in (
        Key("PatientName", Level.STUDY, _NAME, Kind.NAME),
        Key("PatientID", Level.STUDY, _MRN, Kind.TEXT),
        Key("PatientBirthDate", Level.STUDY, "replace(p.birth_date, '-', '')", Kind.DATE),
        Key("PatientSex", Level.STUDY, "p.sex", Kind.TEXT),
        Key("StudyInstanceUID", Level.STUDY, "st.study_uid", Kind.UID),
        Key("StudyDate", Level.STUDY, "st.study_date", Kind.DATE),
        Key("StudyTime", Level.STUDY, "st.study_time", Kind.TIME),
        Key("AccessionNumber", Level.STUDY, "st.accession_number", Kind.TEXT),
        Key("StudyDescription", Level.STUDY, "st.description", Kind.TEXT),
        Key("ReferringPhysicianName", Level.STUDY, "st.referring_physician", Kind.NAME),
        Key("ModalitiesInStudy", Level.STUDY, "st.modalities", Kind.MODALITIES),
        Key("NumberOfStudyRelatedSeries", Level.STUDY, "st.series_count", Kind.RETURN_ONLY),
        Key("NumberOfStudyRelatedInstances", Level.STUDY, "st.instance_count", Kind.RETURN_ONLY),
        Key("SeriesInstanceUID", Level.SERIES, "se.series_uid", Kind.UID),
        Key("Modality", Level.SERIES, "se.modality", Kind.TEXT),
        Key("SeriesNumber", Level.SERIES, "se.series_number", Kind.NUMBER),
        Key("SeriesDescription", Level.SERIES, "se.description", Kind.TEXT),
        Key("BodyPartExamined", Level.SERIES, "se.body_part", Kind.TEXT),
        Key("NumberOfSeriesRelatedInstances", Level.SERIES, "se.instance_count", Kind.RETURN_ONLY),
        Key("SOPInstanceUID", Level.IMAGE, "i.sop_instance_uid", Kind.UID),
        Key("SOPClassUID", Level.IMAGE, "i.sop_class_uid", Kind.UID),
        Key("InstanceNumber", Level.IMAGE, "i.instance_number", Kind.NUMBER),
        Key("Rows", Level.IMAGE, "i.rows", Kind.NUMBER),
        Key("Columns", Level.IMAGE, "i.columns", Kind.NUMBER),
        Key("NumberOfFrames", Level.IMAGE, "i.number_of_frames", Kind.NUMBER),
    )
}
# The unique key of each level (PS3.4 C.6.2.1), always returned
UNIQUE = {
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}
_FROM = {
    Level.STUDY: "studies st JOIN patients p ON p.id = st.patient_id",
    Level.SERIES: "series se JOIN studies st ON st.id = se.study_id"
    " JOIN patients p ON p.id = st.patient_id",
    Level.IMAGE: "instances i JOIN series se ON se.id = i.series_id"
    " JOIN studies st ON st.id = se.study_id JOIN patients p ON p.id = st.patient_id",
}
_ORDER = {
    Level.STUDY: "st.study_date, st.study_uid",
    Level.SERIES: "st.study_uid, se.series_number, se.series_uid",
    Level.IMAGE: "st.study_uid, se.series_uid, i.instance_number, i.sop_instance_uid",
}
_RETRIEVE_AE = 0x00080054  # Retrieve AE Title: answered with the receiver's own AE
_FIXED = {0x00080056: "ONLINE"}  # Instance Availability: everything is on the local disk
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")


class QueryError(Exception):
    """The Identifier cannot be used; ``status`` is the DIMSE failure to answer."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment[:ERROR_COMMENT_MAX]


@dataclass
class Query:
    """A parsed Identifier: the level, the SQL conditions and the keys to return."""

    level: Level
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    returned: list[Key] = field(default_factory=list)
    empty: list[tuple[int, str]] = field(default_factory=list)  # (tag, VR) returned empty
    charset_requested: bool = False


def parse_identifier(identifier: Dataset) -> Query:
    """Check the Identifier of a Study Root request and build its query.

    Raises :class:`QueryError`: 0xA900 when QueryRetrieveLevel is missing or not STUDY, SERIES
    or IMAGE; 0xC000 when a matching value is invalid (a malformed date range, say).
    """
    try:
        raw_level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    except Exception:
        raise QueryError(UNABLE_TO_PROCESS, "QueryRetrieveLevel cannot be read") from None
    if not raw_level:
        raise QueryError(IDENTIFIER_MISMATCH, "QueryRetrieveLevel (0008,0052) is missing")
    if raw_level not in Level.__members__:
        raise QueryError(
            IDENTIFIER_MISMATCH,
            f"QueryRetrieveLevel must be STUDY, SERIES or IMAGE, not {raw_level[:8]}",
        )
    level = Level[raw_level]
    query = Query(level)
    for elem in _elements(identifier):
        keyword = elem.keyword
        if keyword in ("QueryRetrieveLevel",):
            continue
        if keyword == "SpecificCharacterSet":
            query.charset_requested = True
            continue
        key = KEYS.get(keyword)
        if key is None or key.level > level:
            if elem.tag.group != 0x0002 and not elem.tag.is_private:
                query.empty.append((int(elem.tag), elem.VR))
            continue
        query.returned.append(key)
        value = elem.value
        if elem.VR == "SQ" or value is None or key.kind is Kind.RETURN_ONLY:
            continue
        _add_condition(query, key, value)
    for lvl in Level:
        if lvl <= level and all(k.keyword != UNIQUE[lvl] for k in query.returned):
            query.returned.append(KEYS[UNIQUE[lvl]])
    return query


def _elements(identifier: Dataset) -> list[Any]:
    try:
        return list(identifier)
    except Exception:
        raise QueryError(UNABLE_TO_PROCESS, "the Identifier cannot be decoded") from None


def identifier_values(value: Any) -> list[str]:
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v).strip().rstrip("\x00") for v in items]


def _add_condition(query: Query, key: Key, value: Any) -> None:
    values = [v for v in identifier_values(value) if v != ""]
    if not values or all(set(v) == {"*"} for v in values):
        return  # universal matching (C.2.2.2.3)
    if key.kind is Kind.UID:
        marks = ", ".join("?" for _ in values)
        query.where.append(f"{key.sql} IN ({marks})")
        query.params.extend(values)
        return
    clauses: list[str] = []
    for single in values:
        clause, params = _single(key, single)
        clauses.append(clause)
        query.params.extend(params)
    query.where.append(clauses[0] if len(clauses) == 1 else "(" + " OR ".join(clauses) + ")")


def _single(key: Key, value: str) -> tuple[str, list[Any]]:
    if key.kind is Kind.DATE:
        return _range(key, value, _DATE, "YYYYMMDD")
    if key.kind is Kind.TIME:
        return _range(key, value, _TIME, "HHMMSS")
    if key.kind is Kind.NUMBER:
        try:
            return f"{key.sql} = ?", [int(value)]
        except ValueError:
            raise QueryError(UNABLE_TO_PROCESS, f"{key.keyword} must be a number") from None
    if key.kind is Kind.MODALITIES:
        inner, params = _text("ms.modality", value, case_insensitive=False)
        return (
            f"EXISTS (SELECT 1 FROM series ms WHERE ms.study_id = st.id AND {inner})",  # noqa: S608
            params,
        )
    if key.keyword == "PatientID" and "*" not in value and "?" not in value:
        # the stored MRN itself, so that the index on patients.mrn answers instead of a scan of
        # every study (same matches: a non-empty value never equals the masked placeholder)
        return f"(p.mrn = ? AND p.mrn NOT LIKE '{NO_PATIENT_ID_PREFIX}%')", [value]
    return _text(key.sql, value, case_insensitive=key.kind is Kind.NAME)


def _text(sql: str, value: str, *, case_insensitive: bool) -> tuple[str, list[Any]]:
    if "*" in value or "?" in value:
        pattern = value.replace("[", "[[]")  # GLOB: only * and ? are wildcards here
        if case_insensitive:
            return f"lower({sql}) GLOB ?", [pattern.lower()]
        return f"{sql} GLOB ?", [pattern]
    if case_insensitive:
        return f"lower({sql}) = ?", [value.lower()]
    return f"{sql} = ?", [value]


def _range(key: Key, value: str, form: re.Pattern[str], shape: str) -> tuple[str, list[Any]]:
    """Single value or range matching of DA/TM values (PS3.4 C.2.2.2.5)."""
    low, dash, high = value.partition("-")
    low, high = low.strip(), high.strip()
    for part in (low, high):
        if part and not form.fullmatch(part):
            raise QueryError(UNABLE_TO_PROCESS, f"{key.keyword} must be {shape} or a range of them")
    if key.kind is Kind.TIME:
        column = f"substr(replace({key.sql}, ':', '') || '000000', 1, 6)"
        low = (low.split(".")[0] + "000000")[:6] if low else ""
        high = (high.split(".")[0] + "999999")[:6] if high else ""
    else:
        column = key.sql
    if not dash:
        return f"{column} = ?", [low]
    if low and high:
        if low > high:
            raise QueryError(UNABLE_TO_PROCESS, f"{key.keyword} range ends before it starts")
        return f"{column} BETWEEN ? AND ?", [low, high]
    if low:
        return f"{column} >= ?", [low]
    if high:
        return f"{column} <= ?", [high]
    return "1 = 1", []  # "-" alone: every value


def select_sql(query: Query, columns: list[str]) -> tuple[str, list[Any]]:
    where = " AND ".join(query.where) if query.where else "1 = 1"
    sql = (
        f"SELECT {', '.join(columns)} FROM {_FROM[query.level]}"  # noqa: S608 (fixed parts)
        f" WHERE {where} ORDER BY {_ORDER[query.level]}"
    )
    return sql, list(query.params)


QUERY_RETRIEVE_LEVEL = 0x00080052  # (0008,0052), the first element of every C-FIND match


@dataclass(frozen=True)
class Match:
    """One match's identifier: ``(tag, VR, value)`` per element, values as pydicom takes them
    (a string, an int, a list of strings, None for an empty one), and whether it needs
    Specific Character Set ISO_IR 192 (PS3.4 C.4.1.1.3.1: any non-ASCII value, or asked for)."""

    elements: list[tuple[int, str, Any]]
    utf8: bool

    def get(self, tag: int) -> Any:
        """The value of ``tag``; None when the match does not hold it."""
        return next((value for t, _, value in self.elements if t == tag), None)


def matches(
    db: sqlite_utils.Database,
    query: Query,
    *,
    retrieve_ae: str,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[Match]:
    """One :class:`Match` per matching row with the requested keys (PS3.4 C.4.1.2); ``limit``
    and ``offset`` page through them in their stable order (QIDO-RS, PS3.18 8.3.4.4)."""
    keys = list(dict.fromkeys(query.returned))
    sql, params = select_sql(query, [k.sql for k in keys])
    if limit is not None or offset:
        sql += " LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
    returned = [(key, *_tag_and_vr(key.keyword)) for key in keys]
    for row in db.execute(sql, params):
        elements: list[tuple[int, str, Any]] = [(QUERY_RETRIEVE_LEVEL, "CS", query.level.name)]
        for (key, tag, vr), value in zip(returned, row, strict=True):
            elements.append((tag, vr, retrieve_ae if tag == _RETRIEVE_AE else _value(key, value)))
        present = {tag for tag, _, _ in elements}
        for tag, vr in query.empty:
            if tag not in present:
                present.add(tag)
                value = [] if vr == "SQ" else _FIXED.get(tag)
                elements.append((tag, vr, retrieve_ae if tag == _RETRIEVE_AE else value))
        utf8 = query.charset_requested or any(_non_ascii(v) for _, _, v in elements)
        yield Match(elements, utf8)


def find(
    db: sqlite_utils.Database,
    query: Query,
    *,
    retrieve_ae: str,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[Dataset]:
    """The matches as C-FIND response Identifiers (see :func:`matches`)."""
    for match in matches(db, query, retrieve_ae=retrieve_ae, limit=limit, offset=offset):
        ds = Dataset()
        for tag, vr, value in match.elements:
            ds[tag] = DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE)
        if match.utf8:
            ds.SpecificCharacterSet = "ISO_IR 192"
        yield ds


def _value(key: Key, value: Any) -> Any:
    if key.kind is Kind.MODALITIES:
        modalities = [m for m in str(value or "").split("\\") if m]
        return modalities if len(modalities) != 1 else modalities[0]
    if key.kind in (Kind.NUMBER, Kind.RETURN_ONLY):
        return int(value) if value is not None else None
    return "" if value is None else str(value)


@functools.cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    """A key's tag and VR, looked up once (pydicom's ``setattr`` does it on every call)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


def _non_ascii(value: Any) -> bool:
    if isinstance(value, Sequence):
        return False
    return any(ord(ch) > 127 for ch in str(value))
