"""Test helpers for reports: a real head CT ingested through the real ingest path, copies of the
real chest radiograph as new studies, and the analysis rows the analysis service would write for
them (inserted with plain SQL)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pydicom
import sqlite_utils
from pydicom.uid import generate_uid

from ai.safety import DISCLAIMER
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.rows import new_id, now_iso
from appliance.studies.stability import mark_stable
from tests.dicom_files import instance_files

CXR = instance_files("xr_chest_cr_dx")[0]

CT_SET = "ct_ge_head_tilt18_varspacing"
ACTOR = Actor.system("test")
INDICATION = "Headache after a fall; rule out intracranial hemorrhage."
IMPRESSION = (
    "Possible small right frontal intraparenchymal hemorrhage; correlation with the clinical "
    "findings and follow-up imaging may be considered."
)
FINDINGS = (
    {
        "location": "right frontal lobe",
        "description": "Possible small hyperdense focus in the right frontal lobe, which may "
        "represent a small hemorrhage.",
        "impression": "Possible small intraparenchymal hemorrhage",
        "confidence": 0.62,
        "box": {"y0": 300, "x0": 360, "y1": 380, "x1": 450, "label": "possible hemorrhage"},
        "slice": 10,
        "measurements": (
            ("long axis", 12.4, "mm"),
            ("short axis", 8.1, "mm"),
            ("mean attenuation", 58.0, "HU"),
        ),
    },
    {
        "location": "left lateral ventricle",
        "description": "The lateral ventricles appear possibly mildly prominent, which could "
        "reflect age-related volume loss.",
        "impression": None,
        "confidence": 0.41,
        "box": None,
        "slice": 20,
        "measurements": (("width", 11.0, "mm"),),
    },
    {
        "location": "paranasal sinus",
        "description": "Mucosal thickening may be present in the paranasal sinus, likely of "
        "limited significance.",
        "impression": None,
        "confidence": 0.35,
        "box": None,
        "slice": None,
        "measurements": (("thickness", 4.0, "mm"),),
    },
)


@dataclass(frozen=True)
class CtStudy:
    study_id: str
    series_id: str
    patient_id: str
    instance_ids: list[str]  # in series display order


def settle(db: sqlite_utils.Database) -> None:
    """Every series and study received so far counts as complete (as the stability monitor
    marks them after RADIANT_STABLE_AGE_S without a new instance)."""
    mark_stable(db, stable_age_s=0)


def ingest_ct(ctx: AppContext) -> CtStudy:
    """Ingest every file of the GE head CT; returns its ids."""
    for path in instance_files(CT_SET):
        result = ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
        assert result.outcome in ("stored", "duplicate"), result
    db = ctx.pool.get()
    settle(db)
    study_id, patient_id = db.execute("SELECT id, patient_id FROM studies").fetchone()
    series_id = db.execute("SELECT id FROM series WHERE study_id = ?", (study_id,)).fetchone()[0]
    instance_ids = [
        str(r[0])
        for r in db.execute(
            "SELECT id FROM instances WHERE series_id = ? ORDER BY instance_number IS NULL,"
            " instance_number, sop_instance_uid",
            (series_id,),
        )
    ]
    return CtStudy(str(study_id), str(series_id), str(patient_id), instance_ids)


def insert_analysis(db: sqlite_utils.Database, ct: CtStudy) -> str:
    """A completed analysis with the three findings above (as the analysis service writes)."""
    analysis_id = new_id()
    now = now_iso()
    db.table("analyses").insert(
        {
            "id": analysis_id,
            "study_id": ct.study_id,
            "series_id": ct.series_id,
            "analysis_type": "primary",
            "clinical_indication": INDICATION,
            "status": "completed",
            "engine": "openai",
            "model_id": "google/medgemma-1.5-4b-it",
            "model_revision": "test-rev-1",
            "prompt_id": "ct_head_primary",
            "prompt_version": "3",
            "images_sha256": "ab" * 32,
            "overall_impression": IMPRESSION,
            "disclaimer": DISCLAIMER,
            "verification_flag": "UNVERIFIED",
            "created_at": now,
            "completed_at": now,
        }
    )
    for item in FINDINGS:
        finding_id = new_id()
        slice_index = item["slice"]
        db.table("findings").insert(
            {
                "id": finding_id,
                "analysis_id": analysis_id,
                "series_id": ct.series_id if slice_index is not None else None,
                # The second finding names its instance; the first only its slice.
                "instance_id": ct.instance_ids[slice_index]
                if slice_index is not None and item["box"] is None
                else None,
                "slice_index": slice_index,
                "location": item["location"],
                "description": item["description"],
                "impression": item["impression"],
                "confidence": item["confidence"],
                "box": json.dumps(item["box"]) if item["box"] else None,
                "review_state": "pending",
                "created_at": now,
            }
        )
        for name, value, unit in item["measurements"]:  # type: ignore[attr-defined]
            db.table("measurements").insert(
                {
                    "id": new_id(),
                    "finding_id": finding_id,
                    "name": name,
                    "value": value,
                    "unit": unit,
                    "created_at": now,
                }
            )
    return analysis_id


def radiograph_copy(ctx: AppContext, name: str, study_date: str | None = None) -> str:
    """A copy of the real chest radiograph as a new, complete study of a new patient
    (``name``, MRN ``MRN-<name>``), dated ``study_date`` (DICOM DA) if given; its study id."""
    ds = pydicom.dcmread(CXR)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = f"MRN-{name}"
    ds.PatientName = f"{name}^Test"
    if study_date:
        ds.StudyDate = study_date
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    result = ctx.ingestor.ingest(out.getvalue(), source="test", actor=ACTOR)
    assert result.outcome == "stored", result
    db = ctx.pool.get()
    settle(db)
    row = db.execute(
        "SELECT id FROM studies WHERE study_uid = ?", (str(ds.StudyInstanceUID),)
    ).fetchone()
    return str(row[0])


def insert_completed_analysis(db: sqlite_utils.Database, study_id: str) -> str:
    """A completed analysis of ``study_id`` without findings (as the analysis service writes
    one when the model sees nothing)."""
    analysis_id = new_id()
    now = now_iso()
    db.table("analyses").insert(
        {
            "id": analysis_id,
            "study_id": study_id,
            "analysis_type": "primary",
            "status": "completed",
            "engine": "openai",
            "model_id": "google/medgemma-1.5-4b-it",
            "overall_impression": "No acute abnormality is suggested.",
            "disclaimer": DISCLAIMER,
            "verification_flag": "UNVERIFIED",
            "created_at": now,
            "completed_at": now,
        }
    )
    return analysis_id
