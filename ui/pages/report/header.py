"""The top of the report screen: title, patient and viewer buttons; the create button when
there is no report yet; the banners, status chips, hand-over, partial-study and read-only
notes of an existing one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nicegui import ui

from appliance.reports.models import ReportOut
from appliance.studies import service as studies
from appliance.studies.models import StudyDetail
from ui import components, format, i18n, ohif, runtime, session
from ui.pages.report import data
from ui.pages.report.data import Loaded
from ui.pages.report.roles import CREATORS


def title_row(user: session.SessionUser, study: StudyDetail) -> None:
    with ui.row().classes("w-full items-center gap-2"):
        ui.label(i18n.t("report.title")).classes("text-h4")
        ui.label(format.patient_name(study.patient) + " · " + (study.description or "")).classes(
            "text-h6 radiant-muted")
        ui.space()
        ui.button(i18n.t("action.view"), icon="visibility",
                  on_click=lambda: ui.navigate.to(f"/viewer/{study.id}")).props(
            "no-caps outline size=lg")
        if user.may(session.READERS):
            ui.button(i18n.t("action.diagnostic_viewer"), icon="open_in_new",
                      on_click=lambda: _open_ohif(study)).props(
                "no-caps outline size=lg data-testid=open-ohif")


async def _open_ohif(study: StudyDetail) -> None:
    """Open the diagnostic viewer on the study, beside its prior when the patient has one
    (looked up off the event loop)."""
    prior = await runtime.off_loop(lambda: studies.comparison_prior(runtime.get().db(), study.id))
    ui.navigate.to(ohif.study_url(study.study_uid, prior))


def no_report(
    user: session.SessionUser, loaded: Loaded, reload: Callable[[], Awaitable[None]]
) -> None:
    """No report yet: say so, and offer a draft (from the AI analysis when there is one)."""
    study = loaded.study
    ui.label(i18n.t("report.none")).classes("text-h6").mark("report-none")
    if not user.may(CREATORS):
        return

    async def create() -> None:
        current = session.require(CREATORS)
        if current is None:
            components.refuse()
            return
        try:
            await runtime.off_loop(lambda: data.create(study.id, loaded.analysis_id, current))
        except Exception as exc:
            components.notify_error(exc)
            return
        await reload()

    key = "report.create_from_ai" if loaded.analysis_id else "report.create_empty"
    ui.button(i18n.t(key), icon="note_add", on_click=create).props(
        "no-caps size=lg color=primary data-testid=create-report").mark("create-report")


def status(loaded: Loaded, report: ReportOut, signed: bool, editable: bool) -> None:
    """Verified or AI banner, status and verification chips, version, hand-over and notes."""
    content = report.content
    has_ai = bool(content.provenance) or any(f.source != "radiologist" for f in content.findings)
    verification = report.verification
    if signed:
        components.verified_banner(verification.verifier_name or "-",
                                   format.received(verification.verified_at or ""),
                                   verification.state == "AMENDED")
    elif has_ai:
        components.ai_banner()
    with ui.row().classes("items-center gap-2"):
        components.chip(i18n.t(f"report.status.{report.status}"),
                        components.REPORT_COLOURS.get(report.status, "grey-8"))
        components.chip(report.verification_flag,
                        "green-8" if report.verification_flag == "VERIFIED" else "red-9",
                        "verified" if signed else "gpp_maybe")
        ui.label(i18n.t("report.version", version=report.current_version)).classes(
            "text-body1").props("data-testid=report-version")
        if loaded.handover and not signed:
            ui.label(i18n.t("report.handed_over", name=loaded.handover["by"],
                            when=format.received(loaded.handover["at"]))).classes(
                "radiant-ok").props("data-testid=handed-over").mark("handed-over")
    if content.provenance is not None and content.provenance.partial_instances is not None:
        images = i18n.plural("count.images", content.provenance.partial_instances)
        ui.label(i18n.t("report.partial", images=images)).classes(
            "radiant-error text-body1").props("role=status").mark("report-partial")
    if not editable and not signed:
        ui.label(i18n.t("report.read_only")).classes("radiant-muted").mark("read-only")
