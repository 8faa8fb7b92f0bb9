"""The study's turnaround on the report screen: when it arrived, then how long after arrival it
was complete, analysed by the AI, handed over and signed ("not yet" for steps to come)."""

from __future__ import annotations

from nicegui import ui

from appliance.triage import turnaround
from appliance.triage.models import StudyTurnaround
from ui import format, i18n, runtime
from ui.pages.system_turnaround import duration


def _read(study_id: str) -> StudyTurnaround:
    return turnaround.study_turnaround(runtime.get().db(), study_id)


def strip(study_id: str) -> None:
    """A row of steps, filled off the event loop (ids and times only: not audited)."""
    row = ui.row().classes("w-full items-center gap-2 radiant-muted").mark("turnaround-strip")

    async def fill() -> None:
        found = await runtime.off_loop(lambda: _read(study_id))
        with row:
            ui.label(i18n.t("turnaround.study")).classes("text-subtitle1 text-weight-bold")
            ui.label(i18n.t("turnaround.step.arrival") + " " + format.received(found.arrival))
            for step in turnaround.STEPS:
                minutes = found.minutes.get(step)
                shown = i18n.t("turnaround.pending") if minutes is None else "+" + duration(minutes)
                ui.label("· " + i18n.t(f"turnaround.step.{step}") + " " + shown).props(
                    f"data-testid=turnaround-{step}"
                )

    ui.timer(0.01, fill, once=True)
