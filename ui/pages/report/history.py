"""The version history: each version with its author, changes, newly rejected findings and a
line diff of each section against the version before."""

from __future__ import annotations

import difflib

from nicegui import ui

from appliance.reports.history_models import ReportVersions
from appliance.reports.models import RejectedFinding, ReportContent
from ui import format, i18n
from ui.pages.report.roles import SECTIONS


def section_diff(before: str | None, after: str | None) -> str:
    """A line diff of one section (``-`` removed, ``+`` added)."""
    lines = difflib.unified_diff((before or "").splitlines(), (after or "").splitlines(),
                                 lineterm="", n=0)
    return "\n".join(line for line in lines if not line.startswith(("---", "+++", "@@")))


def rejected_card(gone: RejectedFinding) -> None:
    """A rejected finding: struck through, with who rejected it and when."""
    with ui.card().classes("radiant-card w-full q-pa-sm").mark("rejected-finding"):
        ui.label(gone.finding.text).classes("text-body1 radiant-muted").style(
            "text-decoration: line-through")
        ui.label(i18n.t("report.rejected_line", name=gone.rejected_by or "-",
                        when=format.received(gone.rejected_at))).classes("text-caption")


def history(history: ReportVersions | None) -> None:
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
                        rejected_card(gone)
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
