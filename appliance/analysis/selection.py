"""Which series of a study the model sees (selection rules as data), why none fits, and the
prior study a comparison uses.
"""

from __future__ import annotations

import json

import sqlite_utils

from ai.prompts import (
    SeriesInfo,
    select_series,
)
from appliance.analysis import refusals
from appliance.jobs.models import JobFailed
from appliance.studies import service as studies

#: Modalities that count as "the same" when looking for a prior study.
_MODALITY_GROUPS = {"CR": ("CR", "DX"), "DX": ("CR", "DX")}


def _series_info(db: sqlite_utils.Database, study_id: str) -> dict[str, SeriesInfo]:
    found: dict[str, SeriesInfo] = {}
    for facts in studies.series_facts(db, study_id):
        iop = json.loads(facts.image_orientation) if facts.image_orientation else None
        found[facts.id] = SeriesInfo(
            series_instance_uid=facts.series_uid,
            modality=facts.modality or "",
            instance_count=facts.instance_count,
            image_count=facts.image_count,
            series_description=facts.description or "",
            series_number=facts.series_number,
            image_orientation_patient=tuple(iop) if iop and len(iop) == 6 else None,
            slice_thickness=facts.slice_thickness,
        )
    return found


def modality_group(modality: str) -> tuple[str, ...]:
    """The modalities that count as the same one for a prior (CR and DX together)."""
    return _MODALITY_GROUPS.get(modality.upper(), (modality.upper(),))


def choose_series(
    db: sqlite_utils.Database, study_id: str, modalities: tuple[str, ...] | None = None
) -> str:
    """The series of the study the model sees (selection rules as data): CT first, then MR,
    then the others, or only ``modalities`` (in that order) when given."""
    infos = _series_info(db, study_id)
    present = [info.modality.upper() for info in infos.values()]
    for modality in modalities or ("CT", "MR", *present):
        if modality not in present:
            continue
        chosen = select_series(list(infos.values()), modality)
        if chosen.series is not None:
            uid = chosen.series.series_instance_uid
            return next(k for k, v in infos.items() if v.series_instance_uid == uid)
    raise JobFailed(refusal_reasons(list(infos.values()), modalities or ("CT", "MR", *present)))


def refusal_reasons(infos: list[SeriesInfo], modalities: tuple[str, ...]) -> str:
    """Why no series of a study can be analysed, series by series, in plain words."""
    return refusals.words(refusals.series_refusals(infos, modalities))


def study_refusals(db: sqlite_utils.Database, study_id: str) -> list[refusals.SeriesRefusal]:
    """Why each series of the study is refused, as data (the screens translate it)."""
    infos = list(_series_info(db, study_id).values())
    present = [info.modality.upper() for info in infos]
    return refusals.series_refusals(infos, ("CT", "MR", *present))


def find_prior(db: sqlite_utils.Database, study_id: str, modality: str) -> str | None:
    """The latest earlier study of the same patient with the same modality, if any (CR and DX
    count as one: both are projection radiographs)."""
    study = studies.study_dates(db, study_id)
    group = modality_group(modality)
    for row in studies.patient_studies_with_modality(db, study.patient_id, group, study_id):
        if study.study_date and row.study_date:
            if row.study_date < study.study_date:
                return row.id
        elif row.created_at < study.created_at:
            return row.id
    return None
