"""Building the content of a draft report from the index and (optionally) an analysis.

The header is copied from the patient and study rows; the technique is generated from the
DICOM headers (:mod:`appliance.reports.technique`); findings, measurements, impression and
provenance come from the analysis rows written by the analysis service, which already passed
the safety layer (hedged wording, confidence). Rejected findings are left out.

``findings.box`` holds a box as the safety layer emits it: ``{"y0", "x0", "y1", "x1"}`` (or a
list ``[y0, x0, y1, x1]``) in 0..1000 of the padded square image (see :mod:`ai.boxes`), or
``{"space": "pixels", "row0", "col0", "row1", "col1"}`` in pixel edge coordinates.
``findings.slice_index`` is the 0-based position of the image in its series' display order.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ai.boxes import box_to_pixels, square_padding
from ai.safety import DISCLAIMER
from appliance.db.rows import fetch_all as rows
from appliance.db.rows import fetch_found as one
from appliance.errors import InvalidInput
from appliance.reports import language, technique
from appliance.reports.models import (
    ComparisonStudy,
    ImageRegion,
    KeyImage,
    Measurement,
    Provenance,
    ReportContent,
    ReportFinding,
    ReportHeader,
    SafetyFlag,
)
from appliance.reports.units import to_ucum
from appliance.storage.service import ObjectStore

# The English texts (the reference; every language's are in appliance/reports/locales).
AI_LIMITATIONS = language.text("en", "limitations.ai")


def header(db: sqlite_utils.Database, study_id: str, facility: str) -> ReportHeader:
    row = one(
        db,
        "SELECT s.id, s.study_uid, s.study_date, s.study_time, s.accession_number,"
        " s.description, s.modalities, s.referring_physician, p.id AS p_id, p.mrn,"
        " p.first_name, p.last_name, p.birth_date, p.sex"
        " FROM studies s JOIN patients p ON p.id = s.patient_id WHERE s.id = ?",
        (study_id,),
        f"study {study_id}",
    )
    names = [n for n in (row["first_name"], row["last_name"]) if n]
    return ReportHeader(
        facility=facility,
        patient_id=row["p_id"],
        patient_name=" ".join(names) or None,
        first_name=row["first_name"],
        last_name=row["last_name"],
        mrn=row["mrn"],
        birth_date=row["birth_date"],
        sex=row["sex"],
        study_id=row["id"],
        study_uid=row["study_uid"],
        accession_number=row["accession_number"] or None,
        exam=(row["description"] or "").strip() or None,
        modalities=[m for m in (row["modalities"] or "").split("\\") if m],
        study_date=row["study_date"] or None,
        study_time=row["study_time"] or None,
        referring_physician=(row["referring_physician"] or "").replace("^", " ").strip() or None,
    )


def _key_image(db: sqlite_utils.Database, finding: dict[str, Any]) -> KeyImage | None:
    select = (
        "SELECT i.id, i.sop_instance_uid, i.sop_class_uid, i.series_id, s.series_uid,"
        " i.instance_number, i.rows, i.columns FROM instances i"
        " JOIN series s ON s.id = i.series_id"
    )
    found: list[dict[str, Any]] = []
    index: int | None = finding.get("slice_index")
    if finding.get("instance_id"):
        found = rows(db, f"{select} WHERE i.id = ?", (finding["instance_id"],))
    elif finding.get("series_id") and index is not None and index >= 0:
        found = rows(
            db,
            f"{select} WHERE i.series_id = ? ORDER BY i.instance_number IS NULL,"
            " i.instance_number, i.sop_instance_uid LIMIT 1 OFFSET ?",
            (finding["series_id"], index),
        )
    if not found:
        return None
    row = found[0]
    if index is None and finding.get("instance_id"):
        position = db.execute(
            "SELECT COUNT(*) FROM instances WHERE series_id = ? AND"
            " (COALESCE(instance_number, 2147483647), sop_instance_uid) <"
            " (COALESCE(?, 2147483647), ?)",
            (row["series_id"], row["instance_number"], row["sop_instance_uid"]),
        ).fetchone()
        index = int(position[0])
    return KeyImage(
        instance_id=row["id"],
        sop_instance_uid=row["sop_instance_uid"],
        sop_class_uid=row["sop_class_uid"],
        series_id=row["series_id"],
        series_uid=row["series_uid"],
        instance_number=row["instance_number"],
        slice_index=index,
        rows=row["rows"],
        columns=row["columns"],
    )


def region(box_text: str | None, image: KeyImage | None) -> ImageRegion | None:
    """The finding's box on its key image in pixel edge coordinates, if both exist."""
    if not box_text or image is None or not image.rows or not image.columns:
        return None
    try:
        box = json.loads(box_text)
    except ValueError:
        return None
    try:
        if isinstance(box, dict) and box.get("space") == "pixels":
            values = [float(box[k]) for k in ("row0", "col0", "row1", "col1")]
            row0, col0 = max(0.0, min(values[0], values[2])), max(0.0, min(values[1], values[3]))
            row1 = min(float(image.rows), max(values[0], values[2]))
            col1 = min(float(image.columns), max(values[1], values[3]))
            empty = row1 <= row0 or col1 <= col0
        else:
            coords = box if isinstance(box, list) else [box[k] for k in ("y0", "x0", "y1", "x1")]
            pixels = box_to_pixels(
                [float(v) for v in coords], square_padding(image.rows, image.columns)
            )
            row0, col0, row1, col1, empty = (
                pixels.row0,
                pixels.col0,
                pixels.row1,
                pixels.col1,
                pixels.empty,
            )
    except (KeyError, TypeError, ValueError):
        return None
    if empty:
        return None
    return ImageRegion(
        row0=round(row0, 2), col0=round(col0, 2), row1=round(row1, 2), col1=round(col1, 2)
    )


def _findings(db: sqlite_utils.Database, analysis_id: str) -> list[ReportFinding]:
    found = rows(
        db,
        "SELECT * FROM findings WHERE analysis_id = ? AND review_state != 'rejected'"
        " ORDER BY created_at, rowid",
        (analysis_id,),
    )
    result: list[ReportFinding] = []
    for number, item in enumerate(found, start=1):
        measures = rows(
            db,
            "SELECT name, value, unit FROM measurements WHERE finding_id = ?"
            " ORDER BY created_at, rowid",
            (item["id"],),
        )
        image = _key_image(db, item)
        result.append(
            ReportFinding(
                id=f"f{number}",
                source="ai",
                analysis_finding_id=item["id"],
                location=item["location"],
                text=item["description"],
                impression=item["impression"],
                confidence=float(item["confidence"]),
                measurements=[
                    Measurement(name=m["name"], value=float(m["value"]), unit=to_ucum(m["unit"]))
                    for m in measures
                ],
                key_image=image,
                region=region(item["box"], image),
                review_state=item["review_state"],
                flags=[SafetyFlag(**_flag(f)) for f in json.loads(item["flags"] or "[]")],
            )
        )
    return result


def _flag(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: stored.get(k) for k in ("reason", "phrase", "replacement", "detail")}


def _comparison(
    db: sqlite_utils.Database, analysis: dict[str, Any] | None, lang: str
) -> tuple[str, list[ComparisonStudy]]:
    if analysis is None or not analysis.get("prior_study_id"):
        return language.text(lang, "none"), []
    prior = one(
        db,
        "SELECT id, study_uid, study_date, description FROM studies WHERE id = ?",
        (analysis["prior_study_id"],),
        "prior study",
    )
    study = ComparisonStudy(
        study_id=prior["id"],
        study_uid=prior["study_uid"],
        study_date=prior["study_date"],
        description=prior["description"],
    )
    return comparison_text([study], lang), [study]


def comparison_text(priors: list[ComparisonStudy], lang: str) -> str:
    """The comparison sentence for the prior studies in report language ``lang``."""
    if not priors:
        return language.text(lang, "none")
    sentences = []
    for prior in priors:
        date, description = _date(prior.study_date), prior.description
        if date and description:
            key = "comparison.prior_dated_described"
        elif date:
            key = "comparison.prior_dated"
        elif description:
            key = "comparison.prior_described"
        else:
            key = "comparison.prior"
        sentences.append(language.text(lang, key, date=date, description=description))
    return " ".join(sentences)


def limitations_text(partial_instances: int | None, partial: bool, lang: str) -> str:
    """The limitations of AI content (with the partial analysis note first when partial)."""
    text = language.text(lang, "limitations.ai")
    return f"{partial_note(partial_instances, lang)}\n{text}" if partial else text


def disclaimer(lang: str) -> str:
    """The decision-support disclaimer in ``lang`` (English: :data:`ai.safety.DISCLAIMER`)."""
    return DISCLAIMER if lang == "en" else language.text(lang, "disclaimer")


def _date(value: str | None) -> str:
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or ""


def draft(
    db: sqlite_utils.Database,
    store: ObjectStore,
    study_id: str,
    *,
    facility: str,
    analysis_id: str | None,
    include_ai_disclaimer: bool,
    lang: str = language.DEFAULT,
) -> ReportContent:
    """The content of a new draft, its generated text in report language ``lang``;
    InvalidInput when the analysis belongs to another study, is not finished, or when the AI
    disclaimer is turned off for AI content."""
    lang = language.checked(lang)
    head = header(db, study_id, facility)
    facts = technique.collect(db, store, study_id)
    if not head.exam:
        head.exam = technique.exam_name(facts, lang)
    analysis: dict[str, Any] | None = None
    if analysis_id is not None:
        analysis = one(db, "SELECT * FROM analyses WHERE id = ?", (analysis_id,), "analysis")
        if analysis["study_id"] != study_id:
            raise InvalidInput("the analysis belongs to another study")
        if analysis["status"] not in ("completed", "needs_review"):
            raise InvalidInput(f"the analysis is {analysis['status']}, not completed")
        if not include_ai_disclaimer:
            raise InvalidInput(
                "a report with AI content always carries the decision-support disclaimer"
            )
    comparison, priors = _comparison(db, analysis, lang)
    content = ReportContent(
        header=head,
        language=lang,
        technique=technique.narrative(facts, lang),
        technique_facts=facts,
        comparison=comparison,
        comparison_studies=priors,
        disclaimer=disclaimer(lang) if include_ai_disclaimer else None,
    )
    if analysis is not None:
        content.clinical_indication = analysis["clinical_indication"]
        content.findings = _findings(db, analysis["id"])
        content.impression = analysis["overall_impression"]
        verdict = json.loads(analysis["safety"]) if analysis.get("safety") else {}
        flagged = [SafetyFlag(**_flag(f)) for f in verdict.get("overall_flags", [])]
        content.impression_flags = flagged
        # A flagged impression (reworded included) goes in marked, awaiting a decision.
        content.impression_review = "pending" if flagged else None
        content.limitations = limitations_text(None, False, lang)
        content.provenance = Provenance(
            analysis_id=analysis["id"],
            engine=analysis["engine"],
            model_id=analysis["model_id"],
            model_revision=analysis["model_revision"],
            prompt_id=analysis["prompt_id"],
            prompt_version=analysis["prompt_version"],
            images_sha256=analysis["images_sha256"],
            analysis_completed_at=analysis["completed_at"],
        )
        if analysis.get("partial"):
            count = analysis.get("instance_count")
            content.provenance.partial_instances = count
            content.limitations = limitations_text(count, True, lang)
    return content


def partial_note(count: int | None, lang: str = language.DEFAULT) -> str:
    """The sentence a partial analysis carries into its draft (and so its exports)."""
    if count is None:
        return language.text(lang, "limitations.partial_unknown")
    return language.plural(lang, "limitations.partial", count)


def relanguage(content: ReportContent, lang: str) -> ReportContent:
    """``content`` with report language ``lang``: each generated text still as generated (the
    technique, the exam name, the comparison, the limitations) is written again in ``lang``,
    the disclaimer always; text a radiologist edited is kept as it is."""
    new = language.checked(lang)
    old = content.language
    result = content.model_copy(deep=True)
    result.language = new
    if old == new:
        return result
    facts = content.technique_facts
    if content.technique == technique.narrative(facts, old):
        result.technique = technique.narrative(facts, new)
    if content.header.exam and content.header.exam == technique.exam_name(facts, old):
        result.header.exam = technique.exam_name(facts, new)
    if content.comparison == comparison_text(content.comparison_studies, old):
        result.comparison = comparison_text(content.comparison_studies, new)
    count = content.provenance.partial_instances if content.provenance else None
    for partial in (False, True):
        if content.limitations == limitations_text(count, partial, old):
            result.limitations = limitations_text(count, partial, new)
    if content.disclaimer is not None:
        result.disclaimer = disclaimer(new)
    return result
