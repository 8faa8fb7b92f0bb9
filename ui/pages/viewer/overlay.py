"""The overlay texts: demographics (top left), technique (top right), slice number (bottom
left), the window in force (bottom right), the orientation letters at the four edges; and
which preset button shows as active.

Everything here describes the image on screen: the window line is the window that image was
rendered with (a preset by its name, a drag as "dragged", else the automatic one), never the
window asked for before it arrives. A missing field is said in words ("age unknown")."""

from __future__ import annotations

from appliance.studies.models import StudyDetail
from ui import format, i18n
from ui.pages.viewer.state import PRESETS, Slice, ViewState, window_numbers
from ui.pages.viewer.toolbar import Toolbar
from ui.pages.viewer.viewport import Viewport


def demographics(study: StudyDetail) -> str:
    """Name, MRN, then sex, age and birth date; each missing one in words."""
    patient = study.patient
    name = format.patient_name(patient)
    age = format.age_years(patient.birth_date, format.dicom_date(study.study_date))
    sex = (patient.sex or "").strip()
    facts = [
        sex if sex else i18n.t("overlay.sex_unknown"),
        i18n.t("overlay.age", age=age) if age is not None else i18n.t("overlay.age_unknown"),
        i18n.t("overlay.born", birth=patient.birth_date.isoformat()) if patient.birth_date
        else i18n.t("overlay.birth_unknown"),
    ]
    return "\n".join([
        name if name != "-" else i18n.t("overlay.name_unknown"),
        i18n.t("overlay.mrn", mrn=patient.patient_id) if (patient.patient_id or "").strip()
        else i18n.t("overlay.mrn_unknown"),
        " · ".join(facts),
    ])


def technique(view: ViewState, current: Slice) -> str:
    """Study day, series modality and description, matrix and slice thickness; the fallback
    decoder when the image needed one (its pixels came from another library than usual)."""
    study = view.study
    series = next((s for s in study.series if s.id == view.series_id), None)
    instance = current.instance
    thickness = instance.slice_thickness
    matrix = (
        i18n.t("overlay.matrix", rows=instance.rows, columns=instance.columns)
        if instance.rows and instance.columns else ""
    )
    line = (
        i18n.t("overlay.technique", matrix=matrix, thickness=f"{thickness:g}")
        if thickness is not None and matrix else matrix
    )
    return "\n".join(part for part in [
        format.study_day(study.study_date),
        " ".join(p for p in ((series.modality or ""), (series.description or "")) if p)
        if series else "",
        line,
        i18n.t("overlay.decoder", decoder=view.decoder.upper()) if view.decoder else "",
    ] if part)


def window_lines(view: ViewState) -> tuple[str, str]:
    """What the bottom-right corner says of the image shown: ``Window: Brain`` and
    ``C 40 / W 80``; ``Window: dragged`` after a drag; ``Window: Auto`` for the file's own or
    computed window (also when a CT preset does not apply, e.g. on a radiograph); nothing for
    a colour image or before the first image."""
    source = view.shown_source
    if source is None or source == "colour":
        return "", ""
    if source == "explicit":
        name = i18n.t("overlay.custom")
    elif source == "preset" and view.shown_preset in PRESETS:
        name = i18n.t(f"preset.{view.shown_preset}")
    else:
        name = i18n.t("preset.auto")
    shown = view.shown_window
    numbers = (
        i18n.t("overlay.window", center=window_numbers(shown[0]), width=window_numbers(shown[1]))
        if shown else ""
    )
    return i18n.t("overlay.preset", preset=name), numbers


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
    preset_line, numbers = window_lines(view)
    screen.preset_label.set_text(preset_line)
    screen.window_label.set_text(numbers)
    marks = view.markers
    for label, letters in zip(
        screen.markers,
        (marks.left, marks.right, marks.top, marks.bottom) if marks else ("", "", "", ""),
        strict=True,
    ):
        label.set_text(letters)
    for name, button in controls.preset_buttons.items():
        button.props(remove="unelevated outline")
        active = name == view.preset and view.window is None
        button.props("unelevated color=primary" if active else "outline")
