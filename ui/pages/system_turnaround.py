"""Median turnaround per day on the System screen: for the last days' arrivals, how many were
signed and the median time from arrival to analysed, handed over and signed
(:mod:`appliance.triage.turnaround`; ids and times only)."""

from __future__ import annotations

from nicegui import ui

from appliance.triage import turnaround
from appliance.triage.models import DayTurnaround
from ui import i18n, runtime

DAYS = 7


def duration(minutes: float | None) -> str:
    """Minutes for people: "-" when none, "42 min", "3 h 05 min"."""
    if minutes is None:
        return "-"
    whole = round(minutes)
    if whole < 60:
        return i18n.t("turnaround.minutes", minutes=whole)
    return i18n.t("turnaround.hours", hours=whole // 60, minutes=f"{whole % 60:02d}")


def _rows(days: list[DayTurnaround]) -> list[dict[str, str | int]]:
    return [
        {
            "day": d.day,
            "arrived": d.arrived,
            "signed": d.signed,
            **{f"to_{step}": duration(d.median_minutes.get(step)) for step in turnaround.STEPS},
        }
        for d in reversed(days)
    ]


def card() -> None:
    """The card: one row per day, newest first."""
    days = turnaround.daily(runtime.get().db(), DAYS)
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        ui.label(i18n.t("turnaround.title", days=DAYS)).classes("text-h6")
        columns = [
            {"name": "day", "label": i18n.t("turnaround.day"), "field": "day", "align": "left"},
            {"name": "arrived", "label": i18n.t("turnaround.arrived"), "field": "arrived"},
            {"name": "signed", "label": i18n.t("turnaround.signed"), "field": "signed"},
        ] + [
            {"name": step, "label": i18n.t(f"turnaround.to_{step}"), "field": f"to_{step}"}
            for step in turnaround.STEPS
        ]
        ui.table(columns=columns, rows=_rows(days), row_key="day").classes("w-full").props(
            "dense dark flat hide-pagination :rows-per-page-options=[0] data-testid=turnaround"
        ).mark("turnaround")
        ui.label(i18n.t("turnaround.note")).classes("text-body2 radiant-muted")
