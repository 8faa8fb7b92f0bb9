"""Unaudited reads of series and their instances for other domains' internal use (the series an
analysis selects, the instances it maps its answers back to): ids, modalities, counts, geometry
and storage keys, never patient data. The audited reads for people are in
:mod:`appliance.studies.reads`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from appliance.errors import NotFound


@dataclass(frozen=True, slots=True)
class SeriesFacts:
    """What selecting a series needs: its identity, counts and the first instance's geometry.

    ``image_count`` counts frames (an instance without Number of Frames counts as one);
    ``image_orientation`` is the first instance's Image Orientation (Patient) (0020,0037) as
    stored (JSON text) and ``slice_thickness`` its (0018,0050); "first" is by instance number,
    missing numbers last.
    """

    id: str
    series_uid: str
    modality: str | None
    series_number: int | None
    description: str | None
    instance_count: int
    image_count: int
    image_orientation: str | None
    slice_thickness: float | None


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """One instance of a series in display order: its id, Image Position (Patient) (0020,0032)
    as stored (JSON text) and where its file is."""

    id: str
    image_position: str | None
    storage_key: str
    storage_state: str


@dataclass(frozen=True, slots=True)
class InstanceFile:
    """One instance's file as a volume build reads it: SOP Instance UID, content SHA-256,
    storage key and state, and Number of Frames (0028,0008) when present."""

    id: str
    sop_instance_uid: str
    sha256: str
    storage_key: str
    storage_state: str
    number_of_frames: int | None


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """A series' study and Modality (0008,0060) as indexed (None when unknown)."""

    id: str
    study_id: str
    modality: str | None


def series_facts(db: sqlite_utils.Database, study_id: str) -> list[SeriesFacts]:
    """Every series of a study (in the index's order) with its counts and first geometry."""
    found: list[SeriesFacts] = []
    series = db.execute(
        "SELECT id, series_uid, modality, series_number, description FROM series"
        " WHERE study_id = ?",
        (study_id,),
    ).fetchall()
    for series_id, uid, modality, number, description in series:
        first = db.execute(
            "SELECT image_orientation, slice_thickness FROM instances WHERE series_id = ?"
            " ORDER BY instance_number IS NULL, instance_number LIMIT 1",
            (series_id,),
        ).fetchone()
        count, images = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(MAX(COALESCE(number_of_frames, 1), 1)), 0)"
            " FROM instances WHERE series_id = ?",
            (series_id,),
        ).fetchone()
        found.append(
            SeriesFacts(
                id=str(series_id),
                series_uid=str(uid),
                modality=modality,
                series_number=number,
                description=description,
                instance_count=int(count),
                image_count=int(images),
                image_orientation=first[0] if first else None,
                slice_thickness=first[1] if first else None,
            )
        )
    return found


def series_modality(db: sqlite_utils.Database, series_id: str) -> str | None:
    """The Modality (0008,0060) of a series as indexed (None when unknown);
    :class:`NotFound` (``"series not found"``) when there is no such series."""
    row = db.execute("SELECT modality FROM series WHERE id = ?", (series_id,)).fetchone()
    if row is None:
        raise NotFound("series not found")
    return None if row[0] is None else str(row[0])


def instances_in_display_order(db: sqlite_utils.Database, series_id: str) -> list[InstanceRef]:
    """The instances of a series by instance number (missing last), then SOP Instance UID."""
    found = db.execute(
        "SELECT id, image_position, storage_key, storage_state FROM instances"
        " WHERE series_id = ? ORDER BY instance_number IS NULL, instance_number, sop_instance_uid",
        (series_id,),
    ).fetchall()
    return [InstanceRef(str(r[0]), r[1], str(r[2]), str(r[3])) for r in found]


def series_ref(db: sqlite_utils.Database, series_id: str) -> SeriesRef | None:
    """The study and modality of a series; None when there is no such series."""
    row = db.execute(
        "SELECT id, study_id, modality FROM series WHERE id = ?", (series_id,)
    ).fetchone()
    return SeriesRef(str(row[0]), str(row[1]), row[2]) if row else None


def series_uids(db: sqlite_utils.Database, series_id: str) -> tuple[str, str] | None:
    """(Study Instance UID, Series Instance UID) of a series; None when there is none."""
    row = db.execute(
        "SELECT st.study_uid, se.series_uid FROM series se JOIN studies st ON st.id = se.study_id"
        " WHERE se.id = ?",
        (series_id,),
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def require_series(db: sqlite_utils.Database, series_id: str) -> None:
    """Nothing when the series exists; :class:`NotFound` (``"series <id> not found"``)."""
    if db.execute("SELECT id FROM series WHERE id = ?", (series_id,)).fetchone() is None:
        raise NotFound(f"series {series_id} not found")


def instance_files(db: sqlite_utils.Database, series_id: str) -> list[InstanceFile]:
    """The instance files of a series by instance number (missing last), then SOP Instance
    UID."""
    found = db.execute(
        "SELECT id, sop_instance_uid, sha256, storage_key, storage_state, number_of_frames"
        " FROM instances WHERE series_id = ?"
        " ORDER BY instance_number IS NULL, instance_number, sop_instance_uid",
        (series_id,),
    ).fetchall()
    return [
        InstanceFile(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), r[5]) for r in found
    ]
