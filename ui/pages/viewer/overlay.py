"""The overlay texts: demographics (top left), technique (top right), slice number (bottom
left), preset and window (bottom right); and which preset button shows as active."""

from __future__ import annotations

from appliance.studies.models import StudyDetail
from ui import format, i18n
from ui.pages.viewer.state import Slice, ViewState, window_numbers
from ui.pages.viewer.toolbar import Toolbar
from ui.pages.viewer.viewport import Viewport


def demographics(study: StudyDetail) -> str:
    """Name, MRN, sex, age and birth date."""
    patient = study.patient
    age = format.age_years(patient.birth_date, format.dicom_date(study.study_date))
    return "\n".join([
        format.patient_name(patient),
        i18n.t("overlay.mrn", mrn=patient.patient_id),
        i18n.t("overlay.demographics", sex=patient.sex or "-",
               age="-" if age is None else age,
               birth=patient.birth_date.isoformat() if patient.birth_date else "-"),
    ])


def technique(view: ViewState, current: Slice) -> str:
    """Study day, series modality and description, matrix and slice thickness."""
    study = view.study
    series = next((s for s in study.series if s.id == view.series_id), None)
    thickness = current.instance.slice_thickness
    return "\n".join([
        format.study_day(study.study_date),
        (series.modality or "") + " " + (series.description or "") if series else "",
        i18n.t("overlay.technique",
               rows=current.instance.rows or "-", columns=current.instance.columns or "-",
               thickness="-" if thickness is None else f"{thickness:g}"),
    ])


def fill(screen: Viewport, controls: Toolbar, view: ViewState) -> None:
    """Write the overlay for the current slice and highlight the active preset."""
    if not view.slices:
        screen.bottom_left.set_text(i18n.t("viewer.no_images"))
        return
    current = view.slices[view.index]
    screen.top_left.set_text(demographics(view.study))
    screen.top_right.set_text(technique(view, current))
    screen.bottom_left.set_text(i18n.t("viewer.slice", number=view.index + 1,
                                       total=len(view.slices)))
    chosen = i18n.t("overlay.custom") if view.window else i18n.t(f"preset.{view.preset}")
    screen.preset_label.set_text(i18n.t("overlay.preset", preset=chosen))
    shown = view.window or view.shown_window
    screen.window_label.set_text(
        i18n.t("overlay.window", center=window_numbers(shown[0]),
               width=window_numbers(shown[1])) if shown else ""
    )
    for name, button in controls.preset_buttons.items():
        button.props(remove="unelevated outline")
        active = name == view.preset and view.window is None
        button.props("unelevated color=primary" if active else "outline")
