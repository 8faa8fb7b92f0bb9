"""Report: the structured draft, each section editable by a radiologist; AI findings accepted,
edited or rejected; version history with its changes; sign-off with the confirmation that every
AI finding was reviewed; addenda after sign-off; exports (PDF in the browser, JSON, DICOM SR,
FHIR, send to PACS). Technicians see the draft read-only and hand it over."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from nicegui import app, ui

from appliance.analysis import service as analysis_service
from appliance.auth.models import Role
from appliance.export import routes as export_routes
from appliance.export import service as export
from appliance.reports import service as reports
from appliance.reports.decisions import UndecidedItems, undecided
from appliance.reports.models import (
    FinalizeRequest,
    FindingEdit,
    RejectedFinding,
    ReportContent,
    ReportCreate,
    ReportOut,
    ReportUpdate,
    ReportVersions,
)
from appliance.reports.policy import POLICY, ReportAction
from appliance.studies import service as studies
from appliance.studies.models import StudyDetail
from ui import components, decisions, format, i18n, ohif, runtime, session, urgency_panel

SECTIONS = ("clinical_indication", "technique", "comparison", "impression", "recommendations",
            "limitations")
# Which controls a role sees: the report policy table the service enforces.
CREATORS = POLICY[ReportAction.CREATE_DRAFT]
EDITORS = POLICY[ReportAction.EDIT_DRAFT]
REVIEWERS = POLICY[ReportAction.REVIEW_FINDINGS]
HANDERS = POLICY[ReportAction.HAND_OVER]
SIGNERS = POLICY[ReportAction.SIGN]
AMENDERS = POLICY[ReportAction.ADDENDUM]
EXPORTERS = POLICY[ReportAction.EXPORT]
SENDERS = POLICY[ReportAction.SEND]
# The screen's PDF follows the API's rule for GET /api/export/report/{id}/pdf.
PDF_ROLES: frozenset[Role] = export_routes.Readers.roles


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


@dataclass
class Loaded:
    study: StudyDetail
    report: ReportOut | None
    versions: ReportVersions | None
    handover: dict[str, Any] | None
    analysis_id: str | None


def _load(study_id: str, user: session.SessionUser) -> Loaded:
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


def _create(study_id: str, analysis_id: str | None, user: session.SessionUser) -> ReportOut:
    rt = runtime.get()
    return reports.create(
        rt.db(), rt.ctx.store, ReportCreate(study_id=study_id, analysis_id=analysis_id),
        user.actor, facility=rt.settings.site_name,
    )


def section_diff(before: str | None, after: str | None) -> str:
    """A line diff of one section (``-`` removed, ``+`` added)."""
    lines = difflib.unified_diff((before or "").splitlines(), (after or "").splitlines(),
                                 lineterm="", n=0)
    return "\n".join(line for line in lines if not line.startswith(("---", "+++", "@@")))


def build(user: session.SessionUser, study_id: str) -> None:
    with components.frame(user, ""):
        urgency_panel.panel(user, study_id)
        holder = ui.column().classes("w-full gap-3")

    async def load() -> None:
        loaded = await components.load_or_not_found(holder, lambda: _load(study_id, user))
        if loaded is not None:
            with holder:
                _page(user, loaded, load)

    ui.timer(0.01, load, once=True)


def _page(user: session.SessionUser, loaded: Loaded, reload: Any) -> None:
    study = loaded.study
    report = loaded.report
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
                      on_click=lambda: ui.navigate.to(ohif.study_url(study.study_uid))).props(
                "no-caps outline size=lg data-testid=open-ohif")

    if report is None:
        ui.label(i18n.t("report.none")).classes("text-h6").mark("report-none")
        if user.may(CREATORS):
            async def create() -> None:
                current = session.require(CREATORS)
                if current is None:
                    components.refuse()
                    return
                try:
                    await runtime.off_loop(lambda: _create(study.id, loaded.analysis_id, current))
                except Exception as exc:
                    components.notify_error(exc)
                    return
                await reload()

            key = "report.create_from_ai" if loaded.analysis_id else "report.create_empty"
            ui.button(i18n.t(key), icon="note_add", on_click=create).props(
                "no-caps size=lg color=primary data-testid=create-report").mark("create-report")
        return

    content = report.content
    signed = report.status in ("final", "amended")
    editable = user.may(EDITORS) and not signed
    # Flagged AI items awaiting the radiologist's decision: Sign stays disabled until none.
    pending = [] if signed else undecided(content)
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
        ui.label(i18n.t("report.partial", count=content.provenance.partial_instances)).classes(
            "radiant-error text-body1").props("role=status").mark("report-partial")
    if not editable and not signed:
        ui.label(i18n.t("report.read_only")).classes("radiant-muted").mark("read-only")

    # sections
    editors: dict[str, Any] = {}
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        for name in SECTIONS:
            value = getattr(content, name) or ""
            if editable:
                editors[name] = ui.textarea(i18n.t(f"section.{name}"), value=value).props(
                    f"outlined autogrow data-testid=section-{name}").classes("w-full").mark(
                    f"section-{name}")
            else:
                ui.label(i18n.t(f"section.{name}")).classes("text-subtitle1 text-weight-bold")
                ui.label(value or "-").classes("text-body1").style(
                    "white-space: pre-wrap").props(f"data-testid=section-{name}")

    if content.impression_flags and not signed:
        with ui.card().classes("radiant-card w-full q-pa-md gap-2").mark("impression-flags"):
            components.safety_flags(content.impression_flags, "impression-flag")
            if content.impression_review == "pending":
                ui.label(i18n.t("report.impression_pending")).classes(
                    "radiant-error text-body1").mark("impression-pending")
                if user.may(REVIEWERS):
                    ui.button(i18n.t("report.impression_accept"), icon="check",
                              on_click=lambda: review(reports.IMPRESSION, "accepted")).props(
                        "no-caps outline color=positive").mark("impression-accept")

    # findings
    finding_editors: dict[str, Any] = {}
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        ui.label(i18n.t("report.findings")).classes("text-h6")
        if not content.findings:
            ui.label(i18n.t("report.no_findings")).classes("radiant-muted")
        for finding in content.findings:
            card = ui.card().classes("radiant-card w-full q-pa-sm")
            with card.props("data-testid=report-finding"):
                with ui.row().classes("w-full items-center gap-2"):
                    source = i18n.t(f"finding.source.{finding.source}")
                    ui.label(source).classes("text-caption radiant-muted")
                    if finding.confidence is not None:
                        ui.label(i18n.t("finding.confidence",
                                        percent=round(finding.confidence * 100))).classes(
                            "text-caption text-weight-bold")
                    components.chip(i18n.t(f"review.{finding.review_state}"), "blue-grey-8")
                components.safety_flags(finding.flags, f"flag-{finding.id}")
                if finding.needs_decision and not signed:
                    ui.label(i18n.t("decision.finding_pending")).classes(
                        "radiant-error text-body1").mark(f"pending-{finding.id}")
                if editable:
                    finding_editors[finding.id] = ui.textarea(
                        i18n.t("report.finding_text"), value=finding.text
                    ).props("outlined autogrow data-testid=finding-text").classes("w-full")
                else:
                    ui.label(finding.text).classes("text-body1")
                if user.may(REVIEWERS) and not signed:
                    with ui.row().classes("gap-2"):
                        ui.button(i18n.t("review.accept"), icon="check",
                                  on_click=lambda f=finding.id: review(f, "accepted")).props(
                            "no-caps outline color=positive data-testid=finding-accept").mark(
                            f"accept-{finding.id}")
                        ui.button(i18n.t("review.reject"), icon="close",
                                  on_click=lambda f=finding.id: review(f, "rejected")).props(
                            "no-caps outline color=negative data-testid=finding-reject").mark(
                            f"reject-{finding.id}")
        if content.rejected_findings:
            ui.label(i18n.t("report.rejected_title")).classes("text-subtitle1 text-weight-bold")
            for gone in content.rejected_findings:
                _rejected(gone)
        if content.disclaimer and not signed:
            ui.label(content.disclaimer).classes("text-body2 radiant-muted").props(
                "data-testid=report-disclaimer")
        elif content.disclaimer:
            ui.label(i18n.t("report.verified_findings",
                            name=verification.verifier_name or "-")).classes(
                "text-body2 radiant-ok").props("data-testid=report-disclaimer")
        for addendum in content.addenda:
            ui.label(i18n.t("report.addendum_line", version=addendum.version,
                            name=addendum.author_name or "-",
                            when=format.received(addendum.created_at))).classes(
                "text-subtitle1 text-weight-bold")
            ui.label(addendum.text).classes("text-body1").style("white-space: pre-wrap")

    message = ui.label().classes("radiant-error text-body1").props(
        "role=alert data-testid=report-message").mark("report-message")

    async def save() -> None:
        current = session.require(EDITORS)
        if current is None:
            components.refuse()
            return
        changes: dict[str, Any] = {}
        for name, editor in editors.items():
            text = str(editor.value or "").strip()
            if text != (getattr(content, name) or ""):
                changes[name] = text or None
        edits = []
        changed_findings = False
        for finding in content.findings:
            text = str(finding_editors[finding.id].value or "").strip()
            if not text:
                message.set_text(i18n.t("report.finding_empty"))
                return
            changed_findings = changed_findings or text != finding.text
            edits.append(FindingEdit(id=finding.id, location=finding.location, text=text,
                                     impression=finding.impression,
                                     measurements=finding.measurements))
        if changed_findings:
            changes["findings"] = edits
        if not changes:
            message.set_text(i18n.t("report.nothing_changed"))
            return
        try:
            body = ReportUpdate(**changes, expected_version=report.current_version)
            await runtime.off_loop(lambda: reports.update(runtime.get().db(), report.id, body,
                                                          current.actor))
        except Exception as exc:
            components.notify_error(exc)
            return
        ui.notify(i18n.t("report.saved"), type="positive")
        await reload()

    async def review(finding_id: str, decision: str) -> None:
        current = session.require(REVIEWERS)
        if current is None:
            components.refuse()
            return
        try:
            await runtime.off_loop(lambda: reports.review_finding(
                runtime.get().db(), report.id, finding_id, decision, current.actor))
        except Exception as exc:
            components.notify_error(exc)
            return
        await reload()

    async def finalize(confirmed: bool) -> None:
        current = session.require(SIGNERS)
        if current is None:
            components.refuse()
            return
        if not confirmed:
            message.set_text(i18n.t("report.confirm_needed"))
            return
        body = FinalizeRequest(ai_findings_reviewed=True, expected_version=report.current_version)
        try:
            await runtime.off_loop(lambda: reports.finalize(runtime.get().db(), report.id, body,
                                                            current.actor))
        except UndecidedItems as exc:  # decided elsewhere meanwhile: say which, in words
            message.set_text(decisions.refusal_words(exc))
            return
        except Exception as exc:
            components.notify_error(exc)
            return
        ui.notify(i18n.t("report.finalized"), type="positive")
        await reload()

    async def hand_over() -> None:
        current = session.require(HANDERS)
        if current is None:
            components.refuse()
            return
        try:
            await runtime.off_loop(lambda: reports.hand_over(runtime.get().db(), report.id,
                                                             current.actor))
        except Exception as exc:
            components.notify_error(exc)
            return
        ui.notify(i18n.t("report.handed_over_done"), type="positive")
        await reload()

    async def add_addendum(text: str) -> None:
        current = session.require(AMENDERS)
        if current is None:
            components.refuse()
            return
        if not text.strip():
            message.set_text(i18n.t("report.addendum_empty"))
            return
        try:
            body = ReportUpdate(addendum=text.strip())
            await runtime.off_loop(lambda: reports.update(runtime.get().db(), report.id, body,
                                                          current.actor))
        except Exception as exc:
            components.notify_error(exc)
            return
        await reload()

    # actions by role
    with ui.row().classes("w-full items-center gap-2"):
        if editable:
            ui.button(i18n.t("report.save"), icon="save", on_click=save).props(
                "no-caps size=lg color=primary data-testid=report-save").mark("report-save")
        if user.may(SIGNERS) and not signed:
            with ui.dialog() as dialog, ui.card().classes("q-pa-lg gap-3"):
                ui.label(i18n.t("report.finalize_title")).classes("text-h6")
                decisions.listing(pending)
                reviewed = ui.checkbox(i18n.t("report.confirm_reviewed")).props(
                    "data-testid=confirm-reviewed").mark("confirm-reviewed")
                dialog_message = ui.label().classes("radiant-error").props(
                    "role=alert data-testid=confirm-message")
                with ui.row().classes("gap-2"):
                    ui.button(i18n.t("action.cancel"), on_click=dialog.close).props(
                        "no-caps outline size=lg")

                    async def confirm() -> None:
                        if not reviewed.value:
                            dialog_message.set_text(i18n.t("report.confirm_needed"))
                            return
                        dialog.close()
                        await finalize(True)

                    sign = ui.button(i18n.t("report.sign"), icon="verified",
                                     on_click=confirm).props(
                        "no-caps size=lg color=positive data-testid=confirm-sign").mark(
                        "confirm-sign")
                    if pending:
                        sign.disable()
            ui.button(i18n.t("report.finalize"), icon="verified", on_click=dialog.open).props(
                "no-caps size=lg color=positive data-testid=report-finalize").mark(
                "report-finalize")
            if pending:
                ui.label(i18n.t("decision.count", count=len(pending))).classes(
                    "radiant-error text-body1").props("data-testid=undecided-count").mark(
                    "undecided-count")
        if user.may(HANDERS) and not signed:
            ui.button(i18n.t("report.hand_over"), icon="send", on_click=hand_over).props(
                "no-caps size=lg color=primary data-testid=hand-over").mark("hand-over")
        if signed and user.may(AMENDERS):
            addendum_text = ui.textarea(i18n.t("report.addendum")).props(
                "outlined autogrow data-testid=addendum").classes("col").mark("addendum")
            ui.button(i18n.t("report.add_addendum"), icon="post_add",
                      on_click=lambda: add_addendum(str(addendum_text.value or ""))).props(
                "no-caps size=lg color=primary data-testid=add-addendum")

    _exports(user, report)
    _history(loaded.versions)


def _download(report_id: str, kind: str, user: session.SessionUser) -> tuple[bytes, str, str]:
    ctx = runtime.get().ctx
    if kind == "json":
        found = export.export_json(ctx, report_id, user.actor)
        return found.model_dump_json(indent=2).encode(), "json", "application/json"
    if kind == "fhir":
        bundle = export.export_fhir(ctx, report_id, user.actor)
        return json.dumps(bundle, indent=2).encode(), "fhir.json", "application/fhir+json"
    data, _ = export.export_sr(ctx, report_id, user.actor)
    return data, "dcm", "application/dicom"


def _exports(user: session.SessionUser, report: ReportOut) -> None:
    peers = sorted(runtime.get().settings.peers)
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        ui.label(i18n.t("report.exports")).classes("text-h6")
        with ui.row().classes("items-center gap-2"):
            ui.button(i18n.t("export.pdf"), icon="picture_as_pdf",
                      on_click=lambda: ui.navigate.to(f"/screen/report/{report.id}/pdf",
                                                      new_tab=True)).props(
                "no-caps size=lg outline data-testid=export-pdf").mark("export-pdf")

            async def download(kind: str) -> None:
                current = session.require(EXPORTERS)
                if current is None:
                    components.refuse()
                    return
                try:
                    data, suffix, media = await runtime.off_loop(
                        lambda: _download(report.id, kind, current))
                except Exception as exc:
                    components.notify_error(exc)
                    return
                name = f"report-{report.id}-v{report.current_version}.{suffix}"
                ui.download.content(data, name, media)

            for kind, key in (("json", "export.json"), ("sr", "export.sr"),
                              ("fhir", "export.fhir")):
                ui.button(i18n.t(key), icon="download",
                          on_click=lambda k=kind: download(k)).props(
                    f"no-caps size=lg outline data-testid=export-{kind}")
            if user.may(SENDERS):
                if peers:
                    peer = ui.select(peers, value=peers[0], label=i18n.t("export.peer")).props(
                        "outlined data-testid=pacs-peer").classes("w-48")

                    async def send() -> None:
                        current = session.require(SENDERS)
                        if current is None:
                            components.refuse()
                            return
                        try:
                            result = await runtime.off_loop(lambda: export.send(
                                runtime.get().ctx, report.id, str(peer.value), current.actor))
                        except Exception as exc:
                            components.notify_error(exc)
                            return
                        ui.notify(i18n.t(f"export.send_{result.status}", peer=result.peer),
                                  type="positive" if result.status == "sent" else "warning")

                    ui.button(i18n.t("export.send"), icon="send_to_mobile", on_click=send).props(
                        "no-caps size=lg outline data-testid=export-send")
                else:
                    ui.label(i18n.t("export.no_peers")).classes("radiant-muted")


def _rejected(gone: RejectedFinding) -> None:
    """A rejected finding: struck through, with who rejected it and when."""
    with ui.card().classes("radiant-card w-full q-pa-sm").mark("rejected-finding"):
        ui.label(gone.finding.text).classes("text-body1 radiant-muted").style(
            "text-decoration: line-through")
        ui.label(i18n.t("report.rejected_line", name=gone.rejected_by or "-",
                        when=format.received(gone.rejected_at))).classes("text-caption")


def _history(history: ReportVersions | None) -> None:
    if history is None:
        return
    with ui.expansion(i18n.t("report.history", count=len(history.versions)),
                      icon="history").classes("w-full radiant-card").props(
            "data-testid=history header-class=text-h6"):
        if not history.chain_ok:
            ui.label(i18n.t("report.chain_broken", problem=history.chain_problem or "-")).classes(
                "radiant-error")
        previous: ReportContent | None = None
        for version in history.versions:
            with ui.card().classes("radiant-card w-full q-pa-sm"):
                ui.label(i18n.t("report.version_line", version=version.version,
                                kind=i18n.t(f"version.kind.{version.kind}"),
                                name=version.author_name or "-",
                                when=format.received(version.created_at))).classes(
                    "text-subtitle1 text-weight-bold")
                known = {g.finding.id for g in (previous.rejected_findings if previous else [])}
                for gone in version.content.rejected_findings:
                    if gone.finding.id not in known:
                        _rejected(gone)
                for change in version.changes[:30]:
                    ui.label(i18n.t(f"change.{change.change}", path=change.path)).classes(
                        "text-body2")
                if previous is not None:
                    for name in SECTIONS:
                        text = section_diff(getattr(previous, name), getattr(version.content,
                                                                              name))
                        if text:
                            ui.label(text).classes("text-body2").style(
                                "white-space: pre-wrap; font-family: monospace")
            previous = version.content
