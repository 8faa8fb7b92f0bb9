"""The panels around the viewport: the header (patient, study, Analyse and Report), the
series thumbnails on the left and the AI findings on the right."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nicegui import ui

from appliance.analysis.models import AnalysisOut, FindingOut
from appliance.studies.models import StudyDetail
from ui import components, format, i18n, session


def header(user: session.SessionUser, study: StudyDetail) -> None:
    """Patient name, study description and the buttons to the analysis and report screens."""
    with ui.row().classes("w-full items-center gap-2 no-wrap"):
        ui.label(format.patient_name(study.patient)).classes("text-h5 text-weight-bold")
        ui.label(study.description or "").classes("text-h6 radiant-muted ellipsis")
        ui.space()
        if user.may(session.CLINICAL):
            ui.button(i18n.t("action.analyse"), icon="psychology",
                      on_click=lambda: ui.navigate.to(f"/analysis/{study.id}")).props(
                "no-caps outline size=lg data-testid=viewer-analyse")
        ui.button(i18n.t("action.report"), icon="description",
                  on_click=lambda: ui.navigate.to(f"/report/{study.id}")).props(
            "no-caps outline size=lg data-testid=viewer-report")


CARD_CLASSES = "radiant-card q-pa-xs cursor-pointer w-full"


@dataclass
class Thumbnails:
    """One card per series (highlighted when open) and its thumbnail image."""

    cards: dict[str, ui.element] = field(default_factory=dict)
    images: dict[str, ui.image] = field(default_factory=dict)

    def highlight(self, series_id: str) -> None:
        for sid, card in self.cards.items():
            card.classes(replace=CARD_CLASSES + (" bg-blue-10" if sid == series_id else ""))


def thumbnails(
    study: StudyDetail, open_series: Callable[[str], Awaitable[None]]
) -> Thumbnails:
    """The series cards in the current container; a tap opens that series."""
    built = Thumbnails()
    for series in study.series:
        card = ui.card().classes(CARD_CLASSES).props(
            f"data-testid=series-thumb data-series={series.id}").mark("series-thumb")
        card.on("click", lambda s=series.id: open_series(s))
        with card:
            built.images[series.id] = ui.image("").classes("w-full").style(
                "height: 96px; background: #000")
            ui.label(
                i18n.t("viewer.series_label", number=series.series_number or "-",
                       modality=series.modality or "", count=series.instance_count)
            ).classes("text-caption")
        built.cards[series.id] = card
    return built


def findings(
    analysis: AnalysisOut | None, show_finding: Callable[[FindingOut], Awaitable[None]]
) -> None:
    """The AI findings (banner, verification flag, impression, one card each, disclaimer)."""
    if analysis is None:
        ui.label(i18n.t("viewer.no_findings")).classes("radiant-muted")
        return
    result = analysis
    components.ai_banner()
    with ui.row().classes("items-center gap-1"):
        components.chip(result.verification_flag, "red-9", "gpp_maybe")
        ui.label(i18n.t("viewer.findings")).classes("text-h6")
    if result.overall_impression:
        ui.label(result.overall_impression).classes("text-body2")
    for finding in result.findings:
        item = ui.card().classes("radiant-card q-pa-sm w-full cursor-pointer").props(
            "data-testid=finding").mark("finding")
        item.on("click", lambda f=finding: show_finding(f))
        with item:
            ui.label(finding.description).classes("text-body1")
            if finding.location:
                ui.label(finding.location).classes("text-caption radiant-muted")
            ui.label(
                i18n.t("finding.confidence", percent=round(finding.confidence * 100))
            ).classes("text-caption text-weight-bold").props(
                "data-testid=finding-confidence")
    if result.disclaimer:
        ui.label(format.disclaimer(result.disclaimer)).classes("text-caption radiant-muted").props(
            "data-testid=disclaimer")
