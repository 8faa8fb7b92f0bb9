"""Exports of a report's current version: PDF, JSON, DICOM SR, FHIR R4, and the send to a PACS.

Every export is audited (``export.pdf``, ``export.json``, ``export.dicom_sr``, ``export.fhir``,
``export.pacs_send``) with the report id, version and hash, never with content. Exports read the
report as stored; they never change it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, TypeVar

import pydicom
import sqlite_utils
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.connection import transaction
from appliance.db.rows import fetch_all, now_iso
from appliance.dicom import preview
from appliance.errors import AppError, Conflict, InvalidInput, NotFound
from appliance.export import coding, encapsulated, fhir, pdf, sr
from appliance.export.models import (
    ExportSignature,
    ExportVersion,
    ReportExport,
    SendResult,
)
from appliance.integrations import pacs
from appliance.logs import get_logger
from appliance.reports import service as reports
from appliance.reports.models import ReportFinding
from appliance.reports.policy import ReportAction, require
from appliance.reports.service import StoredReport
from appliance.reports.verify import verify_report
from appliance.storage.instances import instance_path
from appliance.storage.models import FileUnavailable

log = get_logger("radiant.export")
T = TypeVar("T")


class PeerRefused(AppError):
    status = 502
    title = "The PACS refused the objects"


def _audited(
    ctx: AppContext,
    actor: Actor,
    action: str,
    report_id: str,
    produce: Callable[[sqlite_utils.Database, StoredReport], tuple[T, dict[str, Any]]],
) -> tuple[T, StoredReport]:
    """Load the report, produce the export, audit it (a missing report as ``not_found``)."""
    require(actor, ReportAction.EXPORT)
    db = ctx.pool.get()
    try:
        report = reports.load(db, report_id)
    except NotFound:
        audit.record(
            db, actor, action, object_type="report", object_id=report_id, outcome="not_found"
        )
        raise
    result, detail = produce(db, report)
    audit.record(
        db,
        actor,
        action,
        object_type="report",
        object_id=report_id,
        detail={
            "version": int(report.version["version"]),
            "hash": report.version["hash"],
            "status": report.status,
            **detail,
        },
    )
    return result, report


def device(ctx: AppContext) -> sr.Device:
    """This appliance as SR device observer (UID derived from its secret key, stable)."""
    return sr.Device(
        uid=generate_uid(entropy_srcs=["radiant-device-observer", ctx.keys.uid_entropy]),
        site=ctx.settings.site_name,
    )


def _storage_key(db: sqlite_utils.Database, instance_id: str) -> str | None:
    row = db.execute(
        "SELECT storage_key FROM instances WHERE id = ?",
        (instance_id,),
    ).fetchone()
    return str(row[0]) if row else None


UNKNOWN_DEIDENTIFICATION = "Unknown: the source images declare the identity removed"
#: Type 2 Patient and General Study attributes (PS3.3 C.7.1.1, C.7.2.1): an SR must carry them,
#: empty when the source image lacks them.
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _header(ctx: AppContext, key: str) -> Dataset:
    with open(instance_path(ctx.pool.get(), ctx.store, key), "rb") as stream:
        ds = pydicom.dcmread(stream, stop_before_pixels=True)
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    if str(ds.get("PatientIdentityRemoved", "")).upper() == "YES" and not (
        ds.get("DeidentificationMethod") or ds.get("DeidentificationMethodCodeSequence")
    ):
        # PS3.3 C.7.1.1: required with PatientIdentityRemoved YES; the source left it empty.
        ds.DeidentificationMethod = UNKNOWN_DEIDENTIFICATION
    return ds


def evidence(ctx: AppContext, db: sqlite_utils.Database, report: StoredReport) -> list[Dataset]:
    """Headers of the key images, else of one image of the study (for patient/study tags)."""
    found: dict[str, Dataset] = {}
    for finding in report.content.findings:
        if finding.key_image is None:
            continue
        key = _storage_key(db, finding.key_image.instance_id)
        if key and finding.key_image.sop_instance_uid not in found:
            found[finding.key_image.sop_instance_uid] = _header(ctx, key)
    if not found:
        row = db.execute(
            "SELECT i.storage_key, i.sop_instance_uid FROM instances i"
            " JOIN series s ON s.id = i.series_id WHERE s.study_id = ?"
            " ORDER BY s.series_number, i.instance_number LIMIT 1",
            (report.row["study_id"],),
        ).fetchone()
        if row is None:
            raise Conflict("the study has no stored image to take patient and study data from")
        found[str(row[1])] = _header(ctx, str(row[0]))
    return list(found.values())


def _key_image_source(
    ctx: AppContext, db: sqlite_utils.Database
) -> Callable[[ReportFinding], bytes | None]:
    def source(finding: ReportFinding) -> bytes | None:
        if finding.key_image is None:
            return None
        key = _storage_key(db, finding.key_image.instance_id)
        if key is None:
            return None
        try:
            path = instance_path(db, ctx.store, key)
            rendered = preview.render(path, frame=finding.key_image.frame)
        except (preview.NotRenderable, ValueError, OSError, FileUnavailable) as exc:
            log.warning("key_image_not_rendered", error=type(exc).__name__)
            return None
        return rendered.png()

    return source


def render_pdf(ctx: AppContext, db: sqlite_utils.Database, report: StoredReport) -> bytes:
    data = pdf.PdfInput(
        content=report.content,
        status=report.status,
        version=int(report.version["version"]),
        report_id=str(report.row["id"]),
        digest=str(report.version["hash"]),
        signer_name=report.signer_name,
        signed_at=report.row["signed_at"],
        page_size=ctx.settings.report_page_size,
        font_path=ctx.settings.report_font_path,
    )
    return pdf.render(data, _key_image_source(ctx, db))


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def sr_dataset(ctx: AppContext, db: sqlite_utils.Database, report: StoredReport) -> Dataset:
    return sr.build(report, evidence(ctx, db, report), device(ctx))


def pdf_dataset(
    ctx: AppContext, db: sqlite_utils.Database, report: StoredReport, document: bytes
) -> Dataset:
    facts = report.content.technique_facts
    exam = coding.exam_code(
        coding.first(facts.modalities, report.content.header.modalities),
        coding.first(facts.body_parts),
    )
    return encapsulated.build(
        document,
        evidence(ctx, db, report)[0],
        report_id=str(report.row["id"]),
        version=int(report.version["version"]),
        digest=str(report.version["hash"]),
        created_at=str(report.version["created_at"]),
        title=f"Radiology report: {report.content.header.exam or exam.display}",
        exam=exam,
        site=ctx.settings.site_name,
    )


def export_pdf(ctx: AppContext, report_id: str, actor: Actor) -> tuple[bytes, StoredReport]:
    def produce(db: sqlite_utils.Database, report: StoredReport) -> tuple[bytes, dict[str, Any]]:
        document = render_pdf(ctx, db, report)
        return document, {"size": len(document)}

    return _audited(ctx, actor, "export.pdf", report_id, produce)


def export_json(ctx: AppContext, report_id: str, actor: Actor) -> ReportExport:
    def produce(
        db: sqlite_utils.Database, report: StoredReport
    ) -> tuple[ReportExport, dict[str, Any]]:
        problems = verify_report(db, report_id)
        row = report.row
        result = ReportExport(
            exported_at=now_iso(),
            report_id=row["id"],
            study_id=row["study_id"],
            status=row["status"],
            verification_flag=report.verification.dicom_flag,
            verification=reports.verification_out(report),
            current_version=row["current_version"],
            hash=report.version["hash"],
            chain_ok=not problems,
            signature=ExportSignature(
                signed=report.signed,
                signer_id=row["signed_by"],
                signer_name=report.signer_name,
                signed_at=row["signed_at"],
            ),
            provenance=report.content.provenance,
            content=report.content,
            versions=[ExportVersion(**v) for v in reports.version_history(db, report_id)],
        )
        return result, {"chain_ok": not problems}

    return _audited(ctx, actor, "export.json", report_id, produce)[0]


def export_sr(ctx: AppContext, report_id: str, actor: Actor) -> tuple[bytes, StoredReport]:
    def produce(db: sqlite_utils.Database, report: StoredReport) -> tuple[bytes, dict[str, Any]]:
        ds = sr_dataset(ctx, db, report)
        data = part10(ds)
        return data, {"sop_instance_uid": str(ds.SOPInstanceUID), "size": len(data)}

    return _audited(ctx, actor, "export.dicom_sr", report_id, produce)


def export_study_sr(ctx: AppContext, study_id: str, actor: Actor) -> tuple[bytes, StoredReport]:
    """The SR of the study's most recently changed report."""
    db = ctx.pool.get()
    report_id = reports.latest_for_study(db, study_id)
    if report_id is None:
        exists = db.execute("SELECT 1 FROM studies WHERE id = ?", (study_id,)).fetchone()
        with transaction(db):
            audit.record(
                db,
                actor,
                "export.dicom_sr",
                object_type="study",
                object_id=study_id,
                outcome="not_found",
            )
        if exists is None:
            raise NotFound(f"study {study_id} not found")
        raise NotFound(f"study {study_id} has no report yet: create one first")
    return export_sr(ctx, report_id, actor)


def export_fhir(ctx: AppContext, report_id: str, actor: Actor) -> dict[str, Any]:
    def produce(
        db: sqlite_utils.Database, report: StoredReport
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        document = render_pdf(ctx, db, report)
        series = builder_rows(db, str(report.row["study_id"]))
        bundle = fhir.bundle(report, series=series, pdf=document, site=ctx.settings.site_name)
        return bundle, {"entries": len(bundle["entry"])}

    return _audited(ctx, actor, "export.fhir", report_id, produce)[0]


def builder_rows(db: sqlite_utils.Database, study_id: str) -> list[dict[str, Any]]:
    return fetch_all(
        db,
        "SELECT series_uid, series_number, modality, description, instance_count FROM series"
        " WHERE study_id = ? ORDER BY series_number IS NULL, series_number, created_at, id",
        (study_id,),
    )


def send(ctx: AppContext, report_id: str, peer: str, actor: Actor) -> SendResult:
    """C-STORE the SR and the encapsulated PDF of the current version to ``peer``; a failure
    leaves the send queued for the retrier. Unknown peer: InvalidInput (422)."""
    require(actor, ReportAction.SEND)
    db = ctx.pool.get()
    report = reports.load(db, report_id)
    if peer not in ctx.settings.peers:
        error = InvalidInput(
            f"unknown peer {peer!r}: configure it in RADIANT_DICOM_PEERS "
            f"(known: {', '.join(sorted(ctx.settings.peers)) or 'none'})"
        )
        audit.record(
            db,
            actor,
            "export.pacs_send",
            object_type="report",
            object_id=report_id,
            outcome="refused",
            detail={"reason": "unknown peer"},
        )
        raise error
    structured = sr_dataset(ctx, db, report)
    document = pdf_dataset(ctx, db, report, render_pdf(ctx, db, report))
    version = int(report.version["version"])
    queue_id = pacs.enqueue(
        db,
        ctx.store,
        {"sr": part10(structured), "pdf": part10(document)},
        {"report_id": report_id, "version": version, "peer": peer},
        actor,
    )
    row = pacs.attempt(db, ctx.store, ctx.settings, queue_id, actor)
    status = {"done": "sent", "pending": "queued", "failed": "failed"}[row.status]
    if status == "failed":
        raise PeerRefused(row.last_error or "the send failed", queue_id=queue_id)
    return SendResult(
        queue_id=queue_id,
        status=status,  # type: ignore[arg-type]
        peer=peer,
        version=version,
        attempts=row.attempts,
        last_error=row.last_error,
        sr_sop_instance_uid=str(structured.SOPInstanceUID),
        pdf_sop_instance_uid=str(document.SOPInstanceUID),
    )
