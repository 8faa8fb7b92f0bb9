"""What the analysis screen shows of an engine and an analysis: the engine line (or what to do
without one), the study's arrival sentence, and a result with its safety framing (banner,
UNVERIFIED, confidence, disclaimer) or a failure in plain words."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from appliance.analysis import completeness
from appliance.analysis.models import AnalysisOut
from ui import components, format, i18n, refusals


def engine_line(engine: dict[str, Any]) -> None:
    """The engine and model in use, or a card saying there is none and what to do."""
    engine_name = str(engine.get("name") or "none")
    if engine_name == "none":
        with ui.card().classes("radiant-card w-full q-pa-md").mark("no-engine"):
            ui.label(i18n.t("analysis.no_engine")).classes("text-h6 radiant-error")
            ui.label(i18n.t("analysis.no_engine_next")).classes("text-body1")
    else:
        model = engine.get("model") or engine.get("online_model") or "-"
        ui.label(i18n.t("analysis.engine", engine=engine_name, model=model)).classes(
            "radiant-muted")


def arrival_words(found: completeness.Arrival) -> str:
    """The API's 409 sentence, from the catalog."""
    when = (found.complete_at or "")[:19].replace("T", " ")
    return i18n.t("analysis.arriving", images=i18n.plural("count.images", found.instances),
                  when=when)


def findings_panel(result: AnalysisOut) -> None:
    """An analysis result with its safety framing (banner, UNVERIFIED, confidence, disclaimer)."""
    components.ai_banner()
    with ui.row().classes("items-center gap-2"):
        components.chip(result.verification_flag, "red-9", "gpp_maybe")
        if result.partial:
            ui.label(i18n.plural("analysis.partial", result.instance_count or 0)).classes(
                "radiant-error text-body1").mark("partial")
        ui.label(i18n.t("analysis.result", count=len(result.findings))).classes("text-h6")
    if result.overall_impression:
        ui.label(i18n.t("analysis.impression", text=result.overall_impression)).classes(
            "text-body1")
        components.safety_flags(result.overall_flags, "impression-flag")
    for finding in result.findings:
        with ui.card().classes("radiant-card q-pa-sm w-full").props("data-testid=finding"):
            ui.label(finding.description).classes("text-body1").mark("finding-text")
            ui.label(
                i18n.t("finding.confidence", percent=round(finding.confidence * 100))
            ).classes("text-caption text-weight-bold").props("data-testid=finding-confidence")
            components.safety_flags(finding.flags, "finding-flag")
    if result.disclaimer:
        ui.label(format.disclaimer(result.disclaimer)).classes("text-body2 radiant-muted").props(
            "data-testid=disclaimer").mark("disclaimer")




def result_panel(study_id: str, result: AnalysisOut) -> None:
    """A finished analysis: its failure in plain words, or its findings and the next steps."""
    if result.status == "failed":
        ui.label(i18n.t(f"analysis.failure.{result.failure or 'unexpected'}")).classes(
            "radiant-error text-body1").props("role=alert").mark("analysis-failure")
        if result.failure == "no_series":
            # The selection's own reasons, series by series, in the screen's words.
            refused = ui.column().classes("gap-1").mark("analysis-refusals")
            ui.timer(0.01, lambda: refusals.show_series(refused, study_id), once=True)
        return
    findings_panel(result)
    with ui.row().classes("gap-2"):
        ui.button(i18n.t("action.view"), icon="visibility",
                  on_click=lambda: ui.navigate.to(f"/viewer/{study_id}")).props(
            "no-caps size=lg outline data-testid=result-viewer")
        ui.button(i18n.t("analysis.to_report"), icon="description",
                  on_click=lambda: ui.navigate.to(f"/report/{study_id}")).props(
            "no-caps size=lg color=primary data-testid=to-report")
