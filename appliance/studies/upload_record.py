"""The ``study.upload`` audit row of every web upload (counts and study ids only), and the
screen's upload of single DICOM files through the one ingest path.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.dicom.ingest import Ingestor
from appliance.studies.models import (
    FileResult,
    UploadCounts,
    UploadReport,
)


def record_upload(
    db: sqlite_utils.Database,
    actor: Actor,
    report: UploadReport,
    *,
    outcome: str = "success",
    reason: str | None = None,
) -> None:
    """One ``study.upload`` audit row: counts and study ids only (file names may hold PHI)."""
    detail: dict[str, Any] = {
        "counts": report.counts.model_dump(),
        "study_ids": report.study_ids,
        "bytes": report.received_bytes,
    }
    if reason:
        detail["reason"] = reason
    audit.record(db, actor, "study.upload", object_type="study", outcome=outcome, detail=detail)


def ingest_uploaded(
    ingestor: Ingestor, files: list[tuple[str, bytes]], actor: Actor
) -> UploadReport:
    """Store files uploaded through the screen (one DICOM file each) through the one ingest
    path; anything without the DICOM preamble is rejected, not kept. One ``study.upload``
    audit row (counts and study ids only)."""
    results: list[FileResult] = []
    counts = UploadCounts()
    for name, data in files:
        if data[128:132] != b"DICM" and data[:2] not in (b"\x02\x00", b"\x08\x00"):
            results.append(FileResult(name=name, outcome="rejected", reason="not a DICOM file"))
            counts.rejected += 1
            continue
        found = ingestor.ingest(data, source="upload", actor=actor, origin=actor.client)
        outcome = str(found.outcome.value)
        results.append(
            FileResult(
                name=name,
                outcome=outcome,  # type: ignore[arg-type]
                reason=found.reason,
                sop_instance_uid=found.sop_instance_uid,
                study_id=found.study_id,
                instance_id=found.instance_id,
                quarantine_id=found.quarantine_id,
            )
        )
        setattr(counts, outcome, getattr(counts, outcome) + 1)
    report = UploadReport(
        files=results,
        counts=counts,
        study_ids=sorted({r.study_id for r in results if r.study_id}),
        received_bytes=sum(len(data) for _, data in files),
    )
    record_upload(ingestor.pool.get(), actor, report)
    return report
