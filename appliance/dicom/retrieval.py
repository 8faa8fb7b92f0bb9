"""What a C-GET or C-MOVE sends (PS3.4 C.4.2.2): the query of a retrieve, whose level's unique
key must be given, and the stored instances under the entities it matches."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils
from pydicom.dataset import Dataset

from appliance.dicom.query import (
    IDENTIFIER_MISMATCH,
    UNIQUE,
    Level,
    Query,
    QueryError,
    identifier_values,
    parse_identifier,
    select_sql,
)


@dataclass(frozen=True)
class StoredInstance:
    """An instance a retrieve sends: where its file is and how it is encoded."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    storage_key: str
    study_uid: str
    series_uid: str


def instances(db: sqlite_utils.Database, query: Query) -> list[StoredInstance]:
    """Every stored instance under the entities the query matches (C-GET/C-MOVE, C.4.2.2)."""
    image_level = Query(
        Level.IMAGE, where=query.where, params=query.params, returned=query.returned
    )
    sql, params = select_sql(
        image_level,
        [
            "i.sop_instance_uid",
            "i.sop_class_uid",
            "coalesce(i.transfer_syntax_uid, '')",
            "i.storage_key",
            "st.study_uid",
            "se.series_uid",
        ],
    )
    return [StoredInstance(*(str(v) for v in row)) for row in db.execute(sql, params)]


def retrieve_query(identifier: Dataset) -> Query:
    """The query of a C-GET/C-MOVE: like C-FIND's, but the level's unique key must be given
    (PS3.4 C.4.2.2.1: a retrieve names the entities by their unique keys)."""
    query = parse_identifier(identifier)
    unique = UNIQUE[query.level]
    value = identifier.get(unique)
    if value is None or not [v for v in identifier_values(value) if v]:
        raise QueryError(IDENTIFIER_MISMATCH, f"a {query.level.name} retrieve needs {unique}"[:64])
    return query
