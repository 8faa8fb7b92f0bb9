"""STOW-RS (PS3.18 10.5): each application/dicom part goes through the one ingest path
(:class:`appliance.dicom.ingest.Ingestor`: checked, quarantined with a reason when unfit,
deduplicated, fsynced and committed) before the response names it stored.

The response is the Store Instances Response Module (PS3.18 Table 10.5.3-1) in DICOM JSON:
``ReferencedSOPSequence`` for every instance now durable (stored or already there),
``FailedSOPSequence`` with a ``FailureReason`` for every one refused; the reason in words goes
into a ``Warning: 299`` header. 200 when all are stored, 202 when some failed, 409 when none.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.dicom.ingest import Ingestor, Outcome
from appliance.dicomweb import dicomjson, multipart
from appliance.dicomweb.models import (
    DICOM,
    FAILURE_CANNOT_UNDERSTAND,
    FAILURE_DATASET_MISMATCH,
    FAILURE_OUT_OF_RESOURCES,
    StoreOutcome,
    StoreReport,
)
from appliance.errors import BadRequest, UnsupportedMediaType
from appliance.logs import get_logger

log = get_logger("radiant.dicomweb")

GB = 1_000_000_000
SOURCE = "dicomweb"


def _uids(data: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(study, series, SOP class, SOP instance) read from the header, None where unreadable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        except Exception:
            return None, None, None, None
    out: list[str | None] = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID"):
        try:
            value = ds.get(keyword)
        except Exception:
            value = None
        out.append(str(value) if value else None)
    return out[0], out[1], out[2], out[3]


def store(
    ingestor: Ingestor,
    body: bytes,
    content_type: str | None,
    *,
    study: str | None,
    actor: Actor,
    base: str,
    min_free_gb: float,
) -> tuple[StoreReport, dict[str, Any]]:
    """Store every part of a STOW-RS request; the report and its DICOM JSON response."""
    try:
        boundary, media = multipart.boundary_of(content_type)
    except multipart.MalformedMultipart as exc:
        raise UnsupportedMediaType(str(exc)) from None
    default_type = media.params.get("type", DICOM).lower()
    if default_type not in (DICOM,):
        raise UnsupportedMediaType('this server stores multipart/related; type="application/dicom"')
    try:
        parts = multipart.decode(body, boundary, default_type)
    except multipart.MalformedMultipart as exc:
        raise BadRequest(str(exc)) from None
    if not parts:
        raise BadRequest("the request holds no instance")
    disk_low = ingestor.store.free_bytes() < min_free_gb * GB
    report = StoreReport()
    for part in parts:
        study_uid, series_uid, sop_class, sop_uid = _uids(part.data)
        outcome = StoreOutcome(
            sop_class, sop_uid, stored=False, study_uid=study_uid, series_uid=series_uid
        )
        part_type = multipart.parse_media_type(part.content_type).media_type
        quarantine_id: str | None = None
        if part_type != DICOM:
            outcome.failure = FAILURE_CANNOT_UNDERSTAND
            outcome.reason = f"a part of type {part_type[:40]} is not application/dicom"
        elif disk_low:
            outcome.failure = FAILURE_OUT_OF_RESOURCES
            outcome.reason = "the appliance's disk is below its free-space watermark"
        elif study and study_uid and study_uid != study:
            outcome.failure = FAILURE_DATASET_MISMATCH
            outcome.reason = "the instance belongs to another study than the one in the URL"
        else:
            result = ingestor.ingest(part.data, source=SOURCE, actor=actor, origin=actor.client)
            if result.outcome in (Outcome.STORED, Outcome.DUPLICATE):
                outcome.stored = True
                outcome.sop_instance_uid = result.sop_instance_uid or sop_uid
            else:
                outcome.failure = FAILURE_CANNOT_UNDERSTAND
                outcome.reason = f"quarantined: {result.reason}"
                quarantine_id = result.quarantine_id
        if outcome.failure is not None:
            log.warning(
                "stow_part_refused",
                part=len(report.outcomes) + 1,
                failure=f"0x{outcome.failure:04X}",
                reason=outcome.reason,
                quarantine_id=quarantine_id,
            )
        report.outcomes.append(outcome)
    audit.record(
        ingestor.pool.get(),
        actor,
        "dicomweb.store",
        object_type="study",
        outcome="success" if report.status_code == 200 else "refused",
        detail={
            "stored": sum(1 for o in report.outcomes if o.stored),
            "failed": sum(1 for o in report.outcomes if not o.stored),
            "reasons": sorted({o.failure for o in report.outcomes if o.failure is not None}),
        },
    )
    return report, response(report, base, study)


def response(report: StoreReport, base: str, study: str | None) -> dict[str, Any]:
    """The Store Instances Response Module (PS3.18 Table 10.5.3-1) as DICOM JSON."""
    ds = Dataset()
    studies = {o.study_uid for o in report.outcomes if o.stored and o.study_uid}
    target = study or (next(iter(studies)) if len(studies) == 1 else None)
    if target:
        ds.RetrieveURL = dicomjson.instance_url(base, target)
    referenced = Sequence()
    failed = Sequence()
    for outcome in report.outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = outcome.sop_class_uid or ""
        item.ReferencedSOPInstanceUID = outcome.sop_instance_uid or ""
        if outcome.stored:
            if outcome.study_uid and outcome.series_uid and outcome.sop_instance_uid:
                item.RetrieveURL = dicomjson.instance_url(
                    base, outcome.study_uid, outcome.series_uid, outcome.sop_instance_uid
                )
            referenced.append(item)
        else:
            item.FailureReason = outcome.failure or FAILURE_CANNOT_UNDERSTAND
            failed.append(item)
    if failed:
        ds.FailedSOPSequence = failed
    if referenced:
        ds.ReferencedSOPSequence = referenced
    return ds.to_json_dict()


def warning_header(report: StoreReport) -> str | None:
    """``299 radiant: ...`` naming the failures in words (RFC 7234 5.5, PS3.18 8.4.4)."""
    reasons = [o.reason for o in report.outcomes if o.reason]
    if not reasons:
        return None
    text = "; ".join(dict.fromkeys(reasons))[:400]
    safe = text.encode("ascii", "replace").decode("ascii").replace('"', "'")
    return f'299 radiant "{safe}"'
