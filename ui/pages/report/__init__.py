"""Report: the structured draft, each section editable by a radiologist; AI findings accepted,
edited or rejected; version history with its changes; sign-off with the confirmation that every
AI finding was reviewed; addenda after sign-off; exports (PDF in the browser, JSON, DICOM SR,
FHIR, send to PACS). Technicians see the draft read-only and hand it over.

Components: :mod:`.header`, :mod:`.content` (sections, flags, findings), :mod:`.actions`,
:mod:`.exports`, :mod:`.history`; :mod:`.data` (reads and writes), :mod:`.roles`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from nicegui import app, ui

from appliance.export import service as export
from appliance.reports.decisions import undecided
from ui import components, i18n, runtime, session, urgency_panel
from ui.pages.report import content, data, header, turnaround
from ui.pages.report.actions import ReportActions
from ui.pages.report.data import Loaded
from ui.pages.report.exports import exports
from ui.pages.report.history import history, section_diff
from ui.pages.report.roles import (
    AMENDERS,
    CREATORS,
    EDITORS,
    EXPORTERS,
    HANDERS,
    PDF_ROLES,
    REVIEWERS,
    SECTIONS,
    SENDERS,
    SIGNERS,
)

__all__ = [
    "AMENDERS",
    "CREATORS",
    "EDITORS",
    "EXPORTERS",
    "HANDERS",
    "PDF_ROLES",
    "REVIEWERS",
    "SECTIONS",
    "SENDERS",
    "SIGNERS",
    "Loaded",
    "build",
    "register",
    "section_diff",
]


def register() -> None:
    @ui.page("/report/{study_id}")
    def report_page(study_id: str) -> components.Guarded:
        user = components.guard_page(session.EVERYONE)
        if not isinstance(user, session.SessionUser):
            return user
        build(user, study_id)
        return None

    @app.get("/screen/report/{report_id}/pdf", include_in_schema=False)
    async def report_pdf(report_id: str, request: Request) -> Response:
        """The PDF for the screen session's user, inline so it opens in the browser: 401
        without a session, 403 for a role the API's export route refuses (:data:`PDF_ROLES`);
        the export service audits it (``export.pdf``)."""
        user = session.current()
        if user is None:
            return PlainTextResponse(i18n.t("auth.signed_out"), status_code=401)
        if not user.may(PDF_ROLES):
            return PlainTextResponse(i18n.t("auth.forbidden"), status_code=403)
        client = request.client.host if request.client else None
        actor = session.SessionUser(user.user_id, user.username, user.full_name, user.role,
                                    client).actor
        try:
            data, stored = await runtime.off_loop(
                lambda: export.export_pdf(runtime.get().ctx, report_id, actor))
        except Exception as exc:
            status = int(getattr(exc, "status", 500))
            return PlainTextResponse(getattr(exc, "detail", "error"), status_code=status)
        name = f"report-{report_id}-v{stored.version['version']}.pdf"
        return Response(data, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="{name}"',
            "Cache-Control": "no-store",
        })


def build(user: session.SessionUser, study_id: str) -> None:
    with components.frame(user, ""):
        urgency_panel.panel(user, study_id)
        holder = ui.column().classes("w-full gap-3")

    async def load() -> None:
        loaded = await components.load_or_not_found(holder, lambda: data.load(study_id, user))
        if loaded is not None:
            with holder:
                _page(user, loaded, load)

    ui.timer(0.01, load, once=True)


def _page(
    user: session.SessionUser, loaded: Loaded, reload: Callable[[], Awaitable[None]]
) -> None:
    report = loaded.report
    header.title_row(user, loaded.study)
    turnaround.strip(loaded.study.id)
    if report is None:
        header.no_report(user, loaded, reload)
        return
    signed = report.status in ("final", "amended")
    editable = user.may(EDITORS) and not signed
    # Flagged AI items awaiting the radiologist's decision: Sign stays disabled until none.
    pending = [] if signed else undecided(report.content)
    actions = ReportActions(report, reload)
    header.status(loaded, report, signed, editable)
    actions.language_control(editable)
    actions.editors = content.sections(report.content, editable)
    content.impression_flags(user, report.content, signed, actions.review)
    actions.finding_editors = content.findings(user, report, signed, editable, actions.review)
    actions.message = ui.label().classes("radiant-error text-body1").props(
        "role=alert data-testid=report-message").mark("report-message")
    actions.buttons(user, signed, editable, pending)
    exports(user, report)
    history(loaded.versions)
