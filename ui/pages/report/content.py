"""The report's content on screen: its sections (editable for an editor of a draft), the
impression's safety flags, the findings with their review buttons, rejected findings, the
disclaimer and the addenda."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui

from appliance.reports import service as reports
from appliance.reports.models import ReportContent, ReportFinding, ReportOut
from ui import components, format, i18n, session
from ui.pages.report.history import rejected_card
from ui.pages.report.roles import REVIEWERS, SECTIONS

Review = Callable[[str, str], Awaitable[None]]


def sections(content: ReportContent, editable: bool) -> dict[str, Any]:
    """Every section, as a text area when editable; returns the text areas by section."""
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
    return editors


def impression_flags(
    user: session.SessionUser, content: ReportContent, signed: bool, review: Review
) -> None:
    """The impression's safety flags on a draft, with the accept button while pending."""
    if not content.impression_flags or signed:
        return
    with ui.card().classes("radiant-card w-full q-pa-md gap-2").mark("impression-flags"):
        components.safety_flags(content.impression_flags, "impression-flag")
        if content.impression_review == "pending":
            ui.label(i18n.t("report.impression_pending")).classes(
                "radiant-error text-body1").mark("impression-pending")
            if user.may(REVIEWERS):
                ui.button(i18n.t("report.impression_accept"), icon="check",
                          on_click=lambda: review(reports.IMPRESSION, "accepted")).props(
                    "no-caps outline color=positive").mark("impression-accept")


def _finding_card(
    user: session.SessionUser, finding: ReportFinding, signed: bool, editable: bool,
    review: Review,
) -> Any:
    """One finding: source, confidence, review state, flags, text and accept/reject."""
    editor: Any = None
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
            editor = ui.textarea(
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
    return editor


def findings(
    user: session.SessionUser, report: ReportOut, signed: bool, editable: bool, review: Review
) -> dict[str, Any]:
    """The findings card; returns the finding text areas by finding id (when editable)."""
    content = report.content
    finding_editors: dict[str, Any] = {}
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        ui.label(i18n.t("report.findings")).classes("text-h6")
        if not content.findings:
            ui.label(i18n.t("report.no_findings")).classes("radiant-muted")
        for finding in content.findings:
            editor = _finding_card(user, finding, signed, editable, review)
            if editor is not None:
                finding_editors[finding.id] = editor
        if content.rejected_findings:
            ui.label(i18n.t("report.rejected_title")).classes("text-subtitle1 text-weight-bold")
            for gone in content.rejected_findings:
                rejected_card(gone)
        if content.disclaimer and not signed:
            ui.label(content.disclaimer).classes("text-body2 radiant-muted").props(
                "data-testid=report-disclaimer")
        elif content.disclaimer:
            ui.label(i18n.t("report.verified_findings",
                            name=report.verification.verifier_name or "-")).classes(
                "text-body2 radiant-ok").props("data-testid=report-disclaimer")
        for addendum in content.addenda:
            ui.label(i18n.t("report.addendum_line", version=addendum.version,
                            name=addendum.author_name or "-",
                            when=format.received(addendum.created_at))).classes(
                "text-subtitle1 text-weight-bold")
            ui.label(addendum.text).classes("text-body1").style("white-space: pre-wrap")
    return finding_editors
