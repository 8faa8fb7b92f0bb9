"""The report screen's reads and writes through the services: the study with its report,
versions and hand-over; a new draft; an export's bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.analysis import service as analysis_service
from appliance.export import findings_sr
from appliance.export import service as export
from appliance.reports import service as reports
from appliance.reports.history_models import ReportVersions
from appliance.reports.models import FinalizeRequest, ReportCreate, ReportOut, ReportUpdate
from appliance.studies import service as studies
from appliance.studies.models import StudyDetail
from ui import runtime, session


@dataclass
class Loaded:
    study: StudyDetail
    report: ReportOut | None
    versions: ReportVersions | None
    handover: dict[str, Any] | None
    analysis_id: str | None


def load(study_id: str, user: session.SessionUser) -> Loaded:
    db = runtime.get().db()
    study = studies.get_study(db, study_id, user.actor)
    found = reports.for_study(db, study_id, user.actor)
    analysis_id = None
    if not found:
        done = [a for a in analysis_service.study_analyses(db, study_id, user.actor)
                if a.status in ("completed", "needs_review")]
        analysis_id = done[0].id if done else None
        return Loaded(study, None, None, None, analysis_id)
    report = reports.get(db, found[0].id, user.actor)
    history = reports.versions(db, report.id, user.actor)
    return Loaded(study, report, history, reports.handed_over(db, report.id), report.analysis_id)


def create(study_id: str, analysis_id: str | None, user: session.SessionUser) -> ReportOut:
    rt = runtime.get()
    out = reports.create(
        rt.db(), rt.ctx.store, ReportCreate(study_id=study_id, analysis_id=analysis_id),
        user.actor, facility=rt.settings.site_name, language=rt.settings.report_language,
    )
    findings_sr.publish(rt.ctx, out.id, user.actor)
    return out


def finalize(report_id: str, body: FinalizeRequest, user: session.SessionUser) -> ReportOut:
    """Sign; a report from an analysis also stores its verified findings SR in the study."""
    rt = runtime.get()
    out = reports.finalize(rt.db(), report_id, body, user.actor)
    findings_sr.publish(rt.ctx, report_id, user.actor)
    return out


def add_addendum(report_id: str, body: ReportUpdate, user: session.SessionUser) -> ReportOut:
    """An addendum; a report from an analysis also stores a new verified findings SR."""
    rt = runtime.get()
    out = reports.update(rt.db(), report_id, body, user.actor)
    findings_sr.publish(rt.ctx, report_id, user.actor)
    return out


def download(report_id: str, kind: str, user: session.SessionUser) -> tuple[bytes, str, str]:
    """``(bytes, file suffix, media type)`` of the JSON, FHIR or DICOM SR export."""
    ctx = runtime.get().ctx
    if kind == "json":
        found = export.export_json(ctx, report_id, user.actor)
        return found.model_dump_json(indent=2).encode(), "json", "application/json"
    if kind == "fhir":
        bundle = export.export_fhir(ctx, report_id, user.actor)
        return json.dumps(bundle, indent=2).encode(), "fhir.json", "application/fhir+json"
    data, _ = export.export_sr(ctx, report_id, user.actor)
    return data, "dcm", "application/dicom"
