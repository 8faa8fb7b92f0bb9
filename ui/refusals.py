"""Refusals the analysis screen shows in the screen's language, never the service's English:
why no series of a study can be analysed (series by series, from the selection rules' codes)
and the 409 of a study that is still arriving."""

from __future__ import annotations

from nicegui import ui

from appliance.analysis import completeness
from appliance.analysis import service as analysis_service
from appliance.analysis.completeness import StudyIncomplete
from appliance.analysis.refusals import SeriesRefusal
from ui import i18n, runtime

CODES = frozenset({
    "modality", "too_few_images", "orientation", "thickness_unknown", "thickness",
    "description_include", "description_exclude", "not_analysed", "not_chosen",
})


def series_words(item: SeriesRefusal) -> str:
    """One refused series: its number, description and the reason, translated."""
    values = {key: str(value) for key, value in item.values.items()}
    values.setdefault("modality", "?")
    if not values.get("modality"):
        values["modality"] = "?"
    if item.code == "orientation" and not values.get("plane"):
        values["plane"] = "?"
    reason = i18n.t(f"refusal.{item.code if item.code in CODES else 'not_chosen'}", **values)
    number = item.series_number if item.series_number is not None else "?"
    if item.description:
        return i18n.t("refusal.series_described", number=number,
                      description=item.description, reason=reason)
    return i18n.t("refusal.series", number=number, reason=reason)


async def show_series(container: ui.column, study_id: str) -> None:
    """Fill ``container`` with the study's refused series (read off the event loop)."""
    try:
        found = await runtime.off_loop(
            lambda: analysis_service.study_refusals(runtime.get().db(), study_id))
    except Exception:
        return
    container.clear()
    with container:
        if not found:
            ui.label(i18n.t("refusal.no_images")).classes("text-body1")
        for item in found:
            ui.label(series_words(item)).classes("text-body1").props(
                "data-testid=series-refusal")


def arriving_words(exc: StudyIncomplete, study_id: str) -> str:
    """The 409 of a study still arriving, as the screen's arrival line says it."""
    instances = exc.extra.get("instances")
    found = completeness.Arrival(study_id, False, int(instances or 0),
                                 exc.extra.get("complete_at"))
    when = (found.complete_at or "")[:19].replace("T", " ")
    return i18n.t("analysis.arriving", images=i18n.plural("count.images", found.instances),
                  when=when)
