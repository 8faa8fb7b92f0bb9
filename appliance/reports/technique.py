"""The technique section, generated from the DICOM headers of a study's instances.

Read per series (first, middle and last instance): Modality (0008,0060), Body Part Examined
(0018,0015), Slice Thickness (0018,0050); CT: KVP (0018,0060), Exposure (0018,1152) in mAs, else
X-Ray Tube Current (0018,1151) x Exposure Time (0018,1150) / 1000; MR: Magnetic Field Strength
(0018,0087), Sequence Name (0018,0024) / Scanning Sequence (0018,0020); Contrast/Bolus Agent
(0018,0010) when present (PS3.3 C.7.3.1, C.8.2.1, C.8.3.1, C.7.6.4).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import pydicom
import sqlite_utils
from pydicom.dataset import Dataset

from appliance.logs import get_logger
from appliance.reports import language
from appliance.reports.models import TechniqueFacts
from appliance.storage.instances import instance_path
from appliance.storage.service import ObjectStore

log = get_logger("radiant.reports")

_BODY_PARTS = frozenset(
    (
        "HEAD",
        "BRAIN",
        "CHEST",
        "ABDOMEN",
        "PELVIS",
        "CSPINE",
        "TSPINE",
        "LSPINE",
        "SPINE",
        "NECK",
        "EXTREMITY",
    )
)
_MODALITIES = frozenset(("CT", "MR", "CR", "DX", "US", "NM", "PT", "MG"))


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return " ".join(str(v) for v in value).strip()
    return str(value).strip()


def _add(values: list[float], value: float | None, digits: int = 2) -> None:
    if value is not None:
        rounded = round(value, digits)
        if rounded not in values:
            values.append(rounded)


def _add_text(values: list[str], value: str) -> None:
    if value and value not in values:
        values.append(value)


def _read(db: sqlite_utils.Database, store: ObjectStore, key: str) -> Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open(instance_path(db, store, key), "rb") as stream:
                return pydicom.dcmread(stream, stop_before_pixels=True)
        except Exception as exc:  # a header we cannot read leaves its facts out
            log.warning("technique_header_unreadable", error=type(exc).__name__)
            return None


def _sample(keys: list[str]) -> list[str]:
    if len(keys) <= 3:
        return keys
    return [keys[0], keys[len(keys) // 2], keys[-1]]


def collect(db: sqlite_utils.Database, store: ObjectStore, study_id: str) -> TechniqueFacts:
    """Facts from the headers of the study's instances (a few per series; an evicted one is
    fetched back, or left out when it cannot be)."""
    facts = TechniqueFacts()
    series_rows = db.execute(
        "SELECT id, modality, body_part, description, instance_count FROM series"
        " WHERE study_id = ? ORDER BY series_number IS NULL, series_number, created_at, id",
        (study_id,),
    ).fetchall()
    for series_id, modality, body_part, description, count in series_rows:
        facts.series_count += 1
        facts.instance_count += int(count or 0)
        _add_text(facts.modalities, str(modality or "").upper())
        _add_text(facts.body_parts, str(body_part or "").upper())
        _add_text(facts.series, str(description or "").strip())
        keys = [
            str(r[0])
            for r in db.execute(
                "SELECT storage_key FROM instances WHERE series_id = ?"
                " ORDER BY instance_number IS NULL, instance_number, sop_instance_uid",
                (series_id,),
            )
        ]
        for key in _sample(keys):
            ds = _read(db, store, key)
            if ds is not None:
                _from_dataset(facts, ds)
    return facts


def _from_dataset(facts: TechniqueFacts, ds: Dataset) -> None:
    modality = _text(ds.get("Modality")).upper()
    _add_text(facts.modalities, modality)
    _add_text(facts.body_parts, _text(ds.get("BodyPartExamined")).upper())
    _add_text(facts.manufacturers, _text(ds.get("Manufacturer")))
    _add(facts.slice_thickness_mm, _float(ds.get("SliceThickness")))
    if modality == "CT":
        _add(facts.kvp, _float(ds.get("KVP")), 0)
        mas = _float(ds.get("Exposure"))
        if mas is None or mas == 0:
            current, time_ms = _float(ds.get("XRayTubeCurrent")), _float(ds.get("ExposureTime"))
            if current and time_ms:
                mas = current * time_ms / 1000.0
        _add(facts.exposure_mas, mas or None, 0)
    if modality == "MR":
        _add(facts.field_strength_t, _float(ds.get("MagneticFieldStrength")), 2)
        name = _text(ds.get("SequenceName"))
        scanning = _text(ds.get("ScanningSequence"))
        label = ", ".join(part for part in (name, scanning) if part)
        _add_text(facts.sequences, label)
    agent = _text(ds.get("ContrastBolusAgent"))
    if agent and facts.contrast_agent is None:
        facts.contrast_agent = agent


def _range(values: Iterable[float], unit: str, lang: str) -> str:
    numbers = sorted(values)
    if not numbers:
        return ""
    low, high = language.number(lang, numbers[0]), language.number(lang, numbers[-1])
    if low == high:
        return f"{low} {unit}"
    return language.text(lang, "range", low=low, high=high, unit=unit)


def exam_name(facts: TechniqueFacts, lang: str = language.DEFAULT) -> str:
    """e.g. ``CT head`` (``TDM de la tête``); the modality alone when no body part is
    recorded."""
    modality = facts.modalities[0] if facts.modalities else ""
    if modality in _MODALITIES:
        word = language.text(lang, f"modality.{modality}")
    else:
        word = modality or language.text(lang, "modality.imaging")
    parts = [
        language.text(lang, f"body.{p}")
        if p in _BODY_PARTS
        else language.text(lang, "body.unlisted", part=p.lower())
        for p in facts.body_parts
        if p
    ]
    if not parts:
        return word
    return language.text(lang, "exam", modality=word, parts=language.text(lang, "and").join(parts))


def narrative(facts: TechniqueFacts, lang: str = language.DEFAULT) -> str:
    """The technique paragraph generated from the facts in report language ``lang`` (editable
    in the draft)."""
    if not facts.series_count:
        return language.text(lang, "technique.no_images")
    sentences = [
        language.text(
            lang,
            "technique.summary",
            exam=exam_name(facts, lang),
            series=language.plural(lang, "technique.series", facts.series_count),
            images=language.plural(lang, "technique.images", facts.instance_count),
        )
    ]
    if facts.slice_thickness_mm:
        thickness = _range(facts.slice_thickness_mm, "mm", lang)
        sentences.append(language.text(lang, "technique.slice_thickness", range=thickness))
    if facts.kvp or facts.exposure_mas:
        parts = [
            p
            for p in (_range(facts.kvp, "kVp", lang), _range(facts.exposure_mas, "mAs", lang))
            if p
        ]
        sentences.append(language.text(lang, "technique.exposure", values=", ".join(parts)))
    if facts.field_strength_t:
        strength = _range(facts.field_strength_t, "T", lang)
        sentences.append(language.text(lang, "technique.field_strength", range=strength))
    if facts.sequences:
        sentences.append(
            language.text(lang, "technique.sequences", items="; ".join(facts.sequences))
        )
    if facts.series:
        sentences.append(
            language.text(lang, "technique.series_list", items="; ".join(facts.series))
        )
    if facts.contrast_agent:
        sentences.append(language.text(lang, "technique.contrast", agent=facts.contrast_agent))
    else:
        sentences.append(language.text(lang, "technique.no_contrast"))
    return " ".join(sentences)
