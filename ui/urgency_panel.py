"""The study's AI urgency on the report screen: level, reasons, and for a radiologist the buttons
that confirm or clear it (audited ``analysis.urgency_review``). Nothing shows for a routine study.

The reasons are rebuilt in the screen's language from the stored assessment: the list's finding
labels per language and the model's own (hedged) reason as it wrote it."""

from __future__ import annotations

from typing import Literal

from nicegui import ui

from appliance.triage import service as triage
from appliance.triage.models import StudyUrgency, UrgencyReview
from ui import components, i18n, runtime, session


def _reasons(found: StudyUrgency) -> list[str]:
    detail = found.detail or {}
    lines: list[str] = []
    model_level = detail.get("model_level")
    if model_level in ("urgent", "critical"):
        reason = detail.get("model_reason") or "-"
        lines.append(i18n.t("urgency.reason.model", level=i18n.t(f"urgency.{model_level}"),
                            reason=reason))
    language = "fr" if i18n.current() == "fr" else "en"
    for match in detail.get("matches", []):
        label = match.get(f"label_{language}") or match.get("label_en") or ""
        lines.append(i18n.t("urgency.reason.list", label=label,
                            level=i18n.t(f"urgency.{match.get('urgency', 'urgent')}")))
    return lines


def panel(user: session.SessionUser, study_id: str) -> None:
    """The panel's place on the page; filled off the event loop."""
    holder = ui.column().classes("w-full gap-2").mark("urgency-panel")

    async def review(analysis_id: str, decision: Literal["confirm", "clear"]) -> None:
        current = session.require(session.SIGNERS)
        if current is None:
            components.refuse()
            return
        try:
            await runtime.off_loop(lambda: triage.review(
                runtime.get().db(), analysis_id, UrgencyReview(decision=decision), current.actor))
        except Exception as exc:
            components.notify_error(exc)
            return
        ui.notify(i18n.t(f"urgency.done.{decision}"), type="positive")
        await load()

    async def load() -> None:
        try:
            found = await runtime.off_loop(
                lambda: triage.study_urgency(runtime.get().db(), study_id, user.actor))
        except Exception as exc:
            components.notify_error(exc)
            return
        holder.clear()
        if found.level == "routine" or found.analysis_id is None:
            return
        analysis_id = found.analysis_id
        state = "confirmed" if found.review == "confirmed" else "unverified"
        with holder, ui.card().classes("radiant-card w-full q-pa-md gap-2"):
            with ui.row().classes("items-center gap-2"):
                components.chip(i18n.t(f"urgency.{found.level}"),
                                components.URGENCY_COLOURS[found.level], "priority_high")
                ui.label(i18n.t(f"urgency.state.{state}")).classes("text-body1").mark(
                    "urgency-state")
            for line in _reasons(found):
                ui.label(line).classes("text-body1")
            if user.may(session.SIGNERS):
                with ui.row().classes("gap-2"):
                    if found.review != "confirmed":
                        ui.button(i18n.t("urgency.confirm"), icon="check",
                                  on_click=lambda: review(analysis_id, "confirm")).props(
                            "no-caps size=lg color=negative data-testid=urgency-confirm").mark(
                            "urgency-confirm")
                    ui.button(i18n.t("urgency.clear"), icon="close",
                              on_click=lambda: review(analysis_id, "clear")).props(
                        "no-caps size=lg outline data-testid=urgency-clear").mark("urgency-clear")

    ui.timer(0.01, load, once=True)
