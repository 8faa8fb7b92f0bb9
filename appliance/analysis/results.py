"""Storing what the safety layer passed: the verdict, each finding with its box and the image
it is on, and its measurements, in one transaction.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ai.confidence import assess_confidence
from ai.safety import SafeAnalysis
from appliance.analysis.geometry import box_json, image_link
from appliance.analysis.preparation import Prepared
from appliance.analysis.store import update_analysis
from appliance.analysis.verdict import finding_flags, verdict
from appliance.db.connection import transaction
from appliance.db.rows import new_id, now_iso


def store_results(
    db: sqlite_utils.Database, analysis_id: str, safe: SafeAnalysis, prepared: Prepared
) -> int:
    """Store the verdict, each finding (with its box and image link) and its measurements in one
    transaction; returns how many findings."""
    now = now_iso()
    update_analysis(db, analysis_id, safety=json.dumps(verdict(safe)))
    boxes: dict[int | None, list[Any]] = {}
    for box in safe.boxes:
        boxes.setdefault(box.finding_index, []).append(box)
    stored = 0
    with transaction(db):
        entries: list[tuple[Any, float, str, str | None, str | None, Any, list[Any]]] = []
        for finding in safe.findings:
            flags = finding_flags(finding)
            entries.append(
                (
                    finding,
                    finding.confidence.value,
                    finding.description,
                    finding.location,
                    finding.impression,
                    (boxes.get(finding.index) or [None])[0],
                    flags,
                )
            )
        for box in boxes.get(None, []):
            label = box.label or "Region of interest suggested by the model"
            assessed = assess_confidence(
                None, original_text=label, parse_repaired=False, narrative=False
            )
            flags = [f.model_dump(mode="json") for f in box.flags]
            entries.append((None, assessed.value, label, None, None, box, flags))
        for finding, confidence, description, location, impression, box, flags in entries:
            link = image_link(prepared, finding.slice if finding is not None else None)
            instance_id, slice_index = link if link is not None else (None, None)
            finding_id = new_id()
            db.execute(
                "INSERT INTO findings (id, analysis_id, series_id, instance_id, slice_index,"
                " location, description, impression, confidence, box, flags, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    finding_id,
                    analysis_id,
                    prepared.series_id,
                    instance_id,
                    slice_index,
                    location,
                    description,
                    impression,
                    min(1.0, max(0.0, float(confidence))),
                    json.dumps(box_json(box, prepared)) if box is not None else None,
                    json.dumps(flags),
                    now,
                ),
            )
            stored += 1
            for item in finding.measurements if finding is not None else ():
                if not isinstance(item.value, float | int):
                    continue
                db.execute(
                    "INSERT INTO measurements (id, finding_id, name, value, unit, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        new_id(),
                        finding_id,
                        item.name or "measurement",
                        float(item.value),
                        item.unit or "",
                        now,
                    ),
                )
    return stored
