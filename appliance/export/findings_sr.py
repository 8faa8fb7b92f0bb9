"""An analysis's findings as a DICOM SR instance of its own study, so that any DICOM viewer
(OHIF through the box's DICOMweb, a PACS through Q/R) shows the AI boxes over the images.

The instance is the TID 1500 Comprehensive 3D SR of :mod:`appliance.export.sr` (SCOORD
POLYLINE regions on the findings' source images, Contributing Equipment Sequence naming the
model as IHE AI Results asks: Manufacturer, Manufacturer's Model Name = the model id, Software
Versions, Purpose of Reference "Processing Equipment"), placed in a series of its own. Only
findings with a box are measurement groups; the others are "Finding" TEXT items of the
narrative (OHIF 3.13's SR loader fails on a measurement group without SCOORD).

- when a draft is created from an analysis: series "RadiantAI findings, UNVERIFIED",
  VerificationFlag UNVERIFIED (the AI's findings as drafted; later draft edits are not
  published, the series shows what the model proposed);
- when the report is signed, and again for each addendum: series "RadiantAI findings, VERIFIED",
  VerificationFlag VERIFIED with the Verifying Observer, a new SOP Instance UID per version.
  The UNVERIFIED instance is kept (nothing stored is deleted).

It is stored through the one ingest path (:class:`appliance.dicom.ingest.Ingestor`), so it is
indexed, audited (``dicom.store``), replicated and served by DICOMweb and Q/R like any instance.
UIDs derive from the report id, version and hash: publishing one version twice is a duplicate,
not a second instance. Reports without an analysis publish nothing (they hold no AI findings).
Publishing follows a committed report change and never undoes it: a failure is audited
(``export.findings_sr``, outcome ``error``) and logged without content.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import generate_uid

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.dicom.ingest import Outcome
from appliance.export import service, sr
from appliance.logs import get_logger
from appliance.reports import service as reports
from appliance.reports.service import StoredReport

log = get_logger("radiant.export.findings_sr")

SOURCE = "report"  # one of appliance.dicom.index_rows.DERIVED_SOURCES: the study stays closed
ACTION = "export.findings_sr"
UNVERIFIED = "RadiantAI findings, UNVERIFIED"
VERIFIED = "RadiantAI findings, VERIFIED"
UNVERIFIED_SERIES_NUMBER = 9902
VERIFIED_SERIES_NUMBER = 9903


@dataclass(frozen=True)
class Published:
    """What the ingest made of the findings SR: ``stored``, ``duplicate`` or ``quarantined``."""

    sop_instance_uid: str
    series_instance_uid: str
    outcome: str


def placement(report: StoredReport) -> sr.Placement:
    """The series (by verification state) and instance (by version) of the findings SR."""
    report_id = str(report.row["id"])
    flag = "VERIFIED" if report.signed else "UNVERIFIED"
    series_uid = generate_uid(entropy_srcs=["radiant-findings-series", report_id, flag])
    instance_uid = generate_uid(
        entropy_srcs=[
            "radiant-findings-sr",
            report_id,
            str(report.version["version"]),
            str(report.version["hash"]),
        ]
    )
    if report.signed:
        return sr.Placement(series_uid, instance_uid, VERIFIED_SERIES_NUMBER, VERIFIED, True)
    return sr.Placement(series_uid, instance_uid, UNVERIFIED_SERIES_NUMBER, UNVERIFIED, True)


def publish(ctx: AppContext, report_id: str, actor: Actor) -> Published | None:
    """Store the findings SR of the report's current version as an instance of its study
    (through ``ctx.ingestor``); None when the report has no analysis or publishing failed
    (audited). Call after the report change committed."""
    db = ctx.pool.get()
    report = reports.load(db, report_id)
    if not report.row["analysis_id"]:
        return None
    detail = {
        "version": int(report.version["version"]),
        "hash": report.version["hash"],
        "status": report.status,
    }
    try:
        where = placement(report)
        ds = sr.build(report, service.evidence(ctx, db, report), service.device(ctx), where)
        result = ctx.ingestor.ingest(
            service.part10(ds), source=SOURCE, actor=actor, origin=f"report {report_id}"
        )
    except Exception as exc:  # the report change is committed: say so, never undo it
        log.warning("findings_sr_not_published", report_id=report_id, error=type(exc).__name__)
        audit.record(
            db,
            actor,
            ACTION,
            object_type="report",
            object_id=report_id,
            outcome="error",
            detail={**detail, "error": type(exc).__name__},
        )
        return None
    refused = result.outcome == Outcome.QUARANTINED
    audit.record(
        db,
        actor,
        ACTION,
        object_type="report",
        object_id=report_id,
        outcome="refused" if refused else "success",
        detail={
            **detail,
            "sop_instance_uid": where.instance_uid,
            "ingest": str(result.outcome),
            **({"reason": result.reason} if refused else {}),
        },
    )
    if refused:
        log.warning("findings_sr_quarantined", report_id=report_id, reason=result.reason)
    return Published(where.instance_uid, where.series_uid, str(result.outcome))
