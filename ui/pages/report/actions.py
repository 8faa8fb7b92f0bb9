"""What a role may do to a report from the screen: save the draft's edits, review a finding,
sign after confirming the review, hand over, add an addendum; and the buttons (with the sign
dialog) that offer them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui

from appliance.audit.models import Actor
from appliance.reports import language as report_language
from appliance.reports import service as reports
from appliance.reports.decisions import Undecided, UndecidedItems
from appliance.reports.models import FinalizeRequest, FindingEdit, ReportOut, ReportUpdate
from ui import components, decisions, i18n, runtime, session
from ui.pages.report import data
from ui.pages.report.roles import AMENDERS, EDITORS, HANDERS, REVIEWERS, SIGNERS


class ReportActions:
    """The actions on one report; ``editors``, ``finding_editors`` and ``message`` are set by
    the page once it has built them."""

    message: ui.label

    def __init__(self, report: ReportOut, reload: Callable[[], Awaitable[None]]) -> None:
        self.report = report
        self.reload = reload
        self.editors: dict[str, Any] = {}
        self.finding_editors: dict[str, Any] = {}

    def _changes(self) -> dict[str, Any] | None:
        """The edited sections and findings; None (with the message shown) when a finding's
        text is empty."""
        content = self.report.content
        changes: dict[str, Any] = {}
        for name, editor in self.editors.items():
            text = str(editor.value or "").strip()
            if text != (getattr(content, name) or ""):
                changes[name] = text or None
        edits = []
        changed_findings = False
        for finding in content.findings:
            text = str(self.finding_editors[finding.id].value or "").strip()
            if not text:
                self.message.set_text(i18n.t("report.finding_empty"))
                return None
            changed_findings = changed_findings or text != finding.text
            edits.append(FindingEdit(id=finding.id, location=finding.location, text=text,
                                     impression=finding.impression,
                                     measurements=finding.measurements))
        if changed_findings:
            changes["findings"] = edits
        return changes

    async def save(self) -> None:
        report = self.report
        current = session.require(EDITORS)
        if current is None:
            components.refuse()
            return
        changes = self._changes()
        if changes is None:
            return
        if not changes:
            self.message.set_text(i18n.t("report.nothing_changed"))
            return
        await self._save_version(
            lambda: ReportUpdate(**changes, expected_version=report.current_version),
            current.actor,
        )

    async def set_language(self, code: str) -> None:
        """Write the draft's generated text again in report language ``code`` (a new version,
        audited as ``report.update``); text a radiologist edited is kept."""
        report = self.report
        current = session.require(EDITORS)
        if current is None:
            components.refuse()
            return
        if code == report.content.language:
            return
        await self._save_version(
            lambda: ReportUpdate(language=report_language.checked(code),
                                 expected_version=report.current_version),
            current.actor,
        )

    async def _save_version(self, make: Callable[[], ReportUpdate], actor: Actor) -> None:
        """Save the update ``make`` builds (a validation error is said like a refusal) as a new
        version, then say so and reload."""
        report = self.report
        try:
            body = make()
            await runtime.off_loop(lambda: reports.update(runtime.get().db(), report.id, body,
                                                          actor))
        except Exception as exc:
            components.notify_error(exc)
            return
        ui.notify(i18n.t("report.saved"), type="positive")
        await self.reload()

    def language_control(self, editable: bool) -> None:
        """The language of the report's generated text: a choice for the draft's editor, a
        line for everyone else."""
        choices = {code: report_language.name(code) for code in report_language.LANGUAGES}
        current = self.report.content.language
        if not editable:
            ui.label(i18n.t("report.language_line", name=choices[current])).classes(
                "text-body2 radiant-muted").props("data-testid=report-language-line").mark(
                "report-language-line")
            return
        ui.select(choices, value=current, label=i18n.t("report.language"),
                  on_change=lambda e: self.set_language(str(e.value))).props(
            "outlined data-testid=report-language").style("min-width: 16rem").mark(
            "report-language")

    async def review(self, finding_id: str, decision: str) -> None:
        report = self.report
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
        await self.reload()

    async def finalize(self, confirmed: bool) -> None:
        report = self.report
        current = session.require(SIGNERS)
        if current is None:
            components.refuse()
            return
        if not confirmed:
            self.message.set_text(i18n.t("report.confirm_needed"))
            return
        body = FinalizeRequest(ai_findings_reviewed=True, expected_version=report.current_version)
        try:
            await runtime.off_loop(lambda: data.finalize(report.id, body, current))
        except UndecidedItems as exc:  # decided elsewhere meanwhile: say which, in words
            self.message.set_text(decisions.refusal_words(exc))
            return
        except Exception as exc:
            components.notify_error(exc)
            return
        ui.notify(i18n.t("report.finalized"), type="positive")
        await self.reload()

    async def hand_over(self) -> None:
        report = self.report
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
        await self.reload()

    async def add_addendum(self, text: str) -> None:
        report = self.report
        current = session.require(AMENDERS)
        if current is None:
            components.refuse()
            return
        if not text.strip():
            self.message.set_text(i18n.t("report.addendum_empty"))
            return
        try:
            body = ReportUpdate(addendum=text.strip())
            await runtime.off_loop(lambda: data.add_addendum(report.id, body, current))
        except Exception as exc:
            components.notify_error(exc)
            return
        await self.reload()

    def _sign_dialog(self, pending: list[Undecided]) -> ui.dialog:
        """The dialog that signs only once the reviewer ticks that every finding was reviewed;
        Sign stays disabled while flagged items await a decision (listed)."""
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
                    await self.finalize(True)

                sign = ui.button(i18n.t("report.sign"), icon="verified",
                                 on_click=confirm).props(
                    "no-caps size=lg color=positive data-testid=confirm-sign").mark(
                    "confirm-sign")
                if pending:
                    sign.disable()
        return dialog

    def buttons(
        self, user: session.SessionUser, signed: bool, editable: bool, pending: list[Undecided]
    ) -> None:
        """The action row for this user's role and the report's state; ``pending`` lists the
        flagged items still awaiting a decision."""
        with ui.row().classes("w-full items-center gap-2"):
            if editable:
                ui.button(i18n.t("report.save"), icon="save", on_click=self.save).props(
                    "no-caps size=lg color=primary data-testid=report-save").mark("report-save")
            if user.may(SIGNERS) and not signed:
                dialog = self._sign_dialog(pending)
                ui.button(i18n.t("report.finalize"), icon="verified",
                          on_click=dialog.open).props(
                    "no-caps size=lg color=positive data-testid=report-finalize").mark(
                    "report-finalize")
                if pending:
                    ui.label(i18n.t("decision.count", count=len(pending))).classes(
                        "radiant-error text-body1").props("data-testid=undecided-count").mark(
                        "undecided-count")
            if user.may(HANDERS) and not signed:
                ui.button(i18n.t("report.hand_over"), icon="send",
                          on_click=self.hand_over).props(
                    "no-caps size=lg color=primary data-testid=hand-over").mark("hand-over")
            if signed and user.may(AMENDERS):
                addendum_text = ui.textarea(i18n.t("report.addendum")).props(
                    "outlined autogrow data-testid=addendum").classes("col").mark("addendum")
                ui.button(i18n.t("report.add_addendum"), icon="post_add",
                          on_click=lambda: self.add_addendum(
                              str(addendum_text.value or ""))).props(
                    "no-caps size=lg color=primary data-testid=add-addendum")
