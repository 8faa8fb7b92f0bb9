"""Worklist (home): unreported critical and urgent studies first (AI triage), then newest
arrival first, as large cards or a dense table (48 px rows, 12+ in view at 1280x800) with status
chips that explain themselves when tapped; search, filters and sort in a panel beside the list;
refreshes itself when a study changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from nicegui import ui

from appliance.studies import service as studies
from appliance.studies.models import (
    StudyListItem,
    StudyPage,
    StudyState,
    WorklistSort,
    WorklistStatus,
)
from appliance.studies.worklist_filters import site_day
from ui import components, format, i18n, ohif, runtime, session

# One filter per status chip, as the studies service offers them (WorklistStatus), with
# "urgent" (the AI triage) among them; every filter is applied by the service, in SQL.
STATUS_FILTERS = ("all", "urgent", *get_args(WorklistStatus))
SORTS = ("urgency", "arrival", "study_date", "status")
VIEWS = ("cards", "table")
SHOWN = 100
MODALITIES = ("all", "CT", "MR", "CR", "DX", "US", "PT", "NM", "MG")
#: Width of the search, filter and sort panel beside the list.
PANEL_REM = 15
#: A chosen option too long for the panel wraps onto a second line instead of being cut off
#: (long filter names, French).
PANEL_CSS = """
.radiant-panel .q-field__native, .radiant-panel .q-field__native > span {
  white-space: normal; overflow: visible; text-overflow: clip; line-height: 1.25; }
"""


@dataclass
class Filters:
    today: bool = False
    arrived_today: bool = False
    status: str = "all"
    modality: str = "all"
    search: str = ""
    sort: str = "urgency"
    view: str = "cards"


def register() -> None:
    @ui.page("/")
    def worklist_page() -> components.Guarded:
        user = components.guard_page(session.EVERYONE)
        if not isinstance(user, session.SessionUser):
            return user
        build(user)
        return None


def _load(
    user: session.SessionUser, filters: Filters
) -> tuple[StudyPage, dict[str, StudyState], str]:
    rt = runtime.get()
    db = rt.db()
    fingerprint = studies.worklist_fingerprint(db)
    modality = None if filters.modality == "all" else filters.modality
    search = filters.search or None
    sort: WorklistSort = "urgency"
    for known in get_args(WorklistSort):
        if filters.sort == known:
            sort = known
    status: WorklistStatus | None = None
    for known_status in get_args(WorklistStatus):
        if filters.status == known_status:
            status = known_status
    page = studies.worklist(
        db,
        user.actor,
        status=status,
        modality=modality,
        search=search,
        limit=SHOWN,
        sort=sort,
        urgent=filters.status == "urgent",
        today=filters.today,
        arrived_today=filters.arrived_today,
        day=site_day(rt.settings.timezone),
    )
    return page, studies.worklist_states(db, [i.id for i in page.items]), fingerprint


def _urgency_chip(state: StudyState) -> None:
    if state.urgency not in components.URGENCY_COLOURS:
        return
    key = f"{state.urgency}_confirmed" if state.urgency_confirmed else state.urgency
    components.chip(
        i18n.t(f"chip.urgency.{key}"),
        components.URGENCY_COLOURS[state.urgency],
        "priority_high" if state.urgency == "critical" else "schedule",
        explain=i18n.t(f"chip.explain.urgency.{key}"),
    )


async def _open_ohif(item: StudyListItem) -> None:
    """Open the diagnostic viewer on the study, beside its prior when the patient has one
    (looked up off the event loop)."""
    prior = await runtime.off_loop(lambda: studies.comparison_prior(runtime.get().db(), item.id))
    ui.navigate.to(ohif.study_url(item.study_uid, prior))


def _workflow_chip(state: StudyState) -> None:
    """One chip for where the study is in reporting, named as the worklist filter that finds
    it: signed, handed over, AI draft ready, a (hand-written) draft, or only AI analysed."""
    if state.report_status in ("final", "amended"):
        key = state.report_status
        components.chip(
            i18n.t(f"report.status.{key}"), components.REPORT_COLOURS[key],
            explain=i18n.t(f"chip.explain.report.{key}"),
        )
    elif state.handed_over:
        components.chip(
            i18n.t("chip.handed_over"), "cyan-9", "forward_to_inbox",
            explain=i18n.t("chip.explain.handed_over"),
        )
    elif state.ai_draft:
        components.chip(
            i18n.t("chip.analyzed"), "purple-8", explain=i18n.t("chip.explain.analyzed")
        )
    elif state.report_status:
        components.chip(
            i18n.t(f"report.status.{state.report_status}"),
            components.REPORT_COLOURS.get(state.report_status, "grey-8"),
            explain=i18n.t(f"chip.explain.report.{state.report_status}"),
        )
    elif state.analysis_status in ("completed", "needs_review"):
        components.chip(
            i18n.t("chip.ai_analysed"), "deep-purple-4",
            explain=i18n.t("chip.explain.ai_analysed"),
        )


def _chips(item: StudyListItem, state: StudyState, *, dense: bool = False) -> None:
    """The study's chips. ``dense`` (a 48 px table row, room for about two chips): urgency,
    "receiving" while images arrive, a running or failed analysis and the report workflow;
    "complete", "volume ready" and "synced" only on the cards."""
    _urgency_chip(state)
    if not dense or item.status != "stable":
        components.chip(
            i18n.t(f"study.status.{item.status}"),
            components.STUDY_COLOURS.get(item.status, "grey-8"),
            # "complete" names the box's own stability delay (RADIANT_STABLE_AGE_S).
            explain=i18n.t(f"chip.explain.status.{item.status}",
                           seconds=f"{runtime.get().settings.stable_age_s:g}"),
        )
    if state.volume_ready and not dense:
        components.chip(
            i18n.t("chip.volume_ready"), "indigo-7", explain=i18n.t("chip.explain.volume_ready")
        )
    if state.analysis_status in ("queued", "running"):
        percent = round(100 * (state.analysis_progress or 0))
        components.chip(
            i18n.t("chip.analyzing", percent=percent), "deep-purple-6", "autorenew",
            explain=i18n.t("chip.explain.analyzing"),
        )
    elif state.analysis_status == "failed":
        components.chip(
            i18n.t("chip.analysis_failed"), "red-9", explain=i18n.t("chip.explain.analysis_failed")
        )
    _workflow_chip(state)
    if state.synced and not dense:
        components.chip(
            i18n.t("chip.synced"), "blue-grey-7", "cloud_done",
            explain=i18n.t("chip.explain.synced"),
        )


def _card(item: StudyListItem, state: StudyState, user: session.SessionUser) -> None:
    patient = item.patient
    with ui.card().classes("radiant-card w-full q-pa-md").props(
        f"data-testid=study-card data-study={item.id}"
    ).mark("study-card"):
        with ui.row().classes("w-full items-start no-wrap gap-4"):
            with ui.column().classes("gap-1 col"):
                name = format.patient_name(patient)
                ui.label(name if name != "-" else i18n.t("overlay.name_unknown")).classes(
                    "text-h6 text-weight-bold")
                ui.label(format.patient_facts(patient, item.study_date)).classes("text-body1")
                ui.label(
                    i18n.t("study.line", modality=" ".join(item.modalities) or "-",
                           description=item.description or i18n.t("study.no_description"),
                           day=format.study_day(item.study_date) or "-")
                ).classes("text-body1")
                ui.label(
                    i18n.t("study.received", when=format.received(item.created_at),
                           images=i18n.plural("count.images", item.instance_count),
                           series=i18n.plural("count.series", item.series_count))
                ).classes("text-body2 radiant-muted")
                with ui.row().classes("gap-1"):
                    _chips(item, state)
            with ui.column().classes("gap-2 items-stretch"):
                ui.button(i18n.t("action.view"), icon="visibility",
                          on_click=lambda: ui.navigate.to(f"/viewer/{item.id}")).props(
                    "no-caps size=lg color=primary data-testid=open-viewer")
                if user.may(session.READERS):
                    ui.button(i18n.t("action.diagnostic_viewer"), icon="open_in_new",
                              on_click=lambda: _open_ohif(item)
                              ).props("no-caps size=lg outline data-testid=open-ohif")
                if user.may(session.CLINICAL):
                    ui.button(i18n.t("action.analyse"), icon="psychology",
                              on_click=lambda: ui.navigate.to(f"/analysis/{item.id}")).props(
                        "no-caps size=lg outline data-testid=open-analysis")
                ui.button(i18n.t("action.report"), icon="description",
                          on_click=lambda: ui.navigate.to(f"/report/{item.id}")).props(
                    "no-caps size=lg outline data-testid=open-report")


def _row(item: StudyListItem, state: StudyState) -> None:
    """One 48 px row of the table view; tapping it opens the study in the viewer."""
    patient = item.patient
    with ui.row().classes("radiant-row w-full items-center no-wrap gap-3 q-px-sm").props(
        f"data-testid=study-row data-study={item.id}"
    ).mark("study-row").on("click", lambda: ui.navigate.to(f"/viewer/{item.id}")):
        ui.label(format.patient_name(patient)).classes(
            "text-body1 text-weight-bold ellipsis").style("width: 11rem; flex: none")
        ui.label(patient.patient_id or "-").classes("ellipsis").style("width: 7rem; flex: none")
        ui.label(" ".join(item.modalities) or "-").style("width: 3.5rem; flex: none")
        # Dates in the screen language ("12 sept. 2024 10:11"): wide enough in both.
        ui.label(format.study_day(item.study_date) or "-").classes("ellipsis").style(
            "width: 8rem; flex: none")
        ui.label(format.received(item.created_at)).classes("radiant-muted ellipsis").style(
            "width: 11rem; flex: none")
        with ui.row().classes("gap-1 no-wrap col overflow-hidden items-center"):
            _chips(item, state, dense=True)


def build(user: session.SessionUser) -> None:
    filters = Filters()
    seen = {"fingerprint": ""}
    with components.frame(user, "nav.worklist"), ui.row().classes(
        "w-full no-wrap items-start gap-4"
    ):
        # Search, filters and sort in a side panel: the list starts at the top of the page, so
        # the table shows 12+ rows of 48 px at 1280x800 (a toolbar above took 200 px).
        ui.add_css(PANEL_CSS)
        with ui.column().classes("radiant-panel gap-3 no-wrap").style(
            f"width: {PANEL_REM}rem; flex: none"
        ):
            ui.label(i18n.t("worklist.title")).classes("text-h5")
            search = ui.input(i18n.t("worklist.search")).props(
                "outlined clearable debounce=400 data-testid=search"
            ).classes("w-full").mark("search")
            status = ui.select(
                {key: i18n.t(f"worklist.status.{key}") for key in STATUS_FILTERS},
                value="all", label=i18n.t("worklist.status"),
            ).props("outlined data-testid=filter-status").classes("w-full").mark("filter-status")
            sort = ui.select(
                {key: i18n.t(f"worklist.sort.{key}") for key in SORTS},
                value="urgency", label=i18n.t("worklist.sort"),
            ).props("outlined data-testid=worklist-sort").classes("w-full").mark("worklist-sort")
            modality = ui.select(
                {key: (i18n.t("worklist.modality.all") if key == "all" else key)
                 for key in MODALITIES},
                value="all", label=i18n.t("worklist.modality"),
            ).props("outlined data-testid=filter-modality").classes("w-full")
            today = ui.switch(i18n.t("worklist.today")).props(
                "data-testid=filter-today").mark("filter-today")
            arrived_today = ui.switch(i18n.t("worklist.arrived_today")).props(
                "data-testid=filter-arrived-today").mark("filter-arrived-today")
            view = ui.toggle(
                {key: i18n.t(f"worklist.view.{key}") for key in VIEWS}, value="cards"
            ).props("no-caps spread data-testid=worklist-view").classes("w-full").mark(
                "worklist-view")
            count = ui.label().classes("text-body1 radiant-muted").props(
                "data-testid=worklist-count").mark("worklist-count")
        # min-width 0: a row's cells may shrink and ellipsize instead of widening the page.
        listing = ui.column().classes("col gap-3").style("min-width: 0").mark(
            "worklist-listing")

    async def refresh() -> None:
        filters.today = bool(today.value)
        filters.arrived_today = bool(arrived_today.value)
        filters.status = str(status.value)
        filters.modality = str(modality.value)
        filters.search = str(search.value or "")
        filters.sort = str(sort.value)
        filters.view = str(view.value)
        if session.require(session.EVERYONE) is None:
            components.refuse()
            return
        try:
            page, states, fingerprint = await runtime.off_loop(lambda: _load(user, filters))
        except Exception as exc:
            components.notify_error(exc)
            return
        seen["fingerprint"] = fingerprint
        items = page.items
        listing.clear()
        listing.classes(replace="col " + ("gap-0" if filters.view == "table" else "gap-3"))
        with listing:
            if not items:
                ui.label(i18n.t("worklist.empty")).classes("text-h6 radiant-muted").mark(
                    "worklist-empty")
            for item in items:
                if filters.view == "table":
                    _row(item, states[item.id])
                else:
                    _card(item, states[item.id], user)
        count.set_text(i18n.t("worklist.count", count=len(items), total=page.total))

    async def poll() -> None:
        fingerprint = await runtime.off_loop(
            lambda: studies.worklist_fingerprint(runtime.get().db())
        )
        if fingerprint != seen["fingerprint"]:
            await refresh()

    for control in (today, arrived_today, status, modality, search, sort, view):
        control.on_value_change(refresh)
    ui.timer(0.01, refresh, once=True)
    ui.timer(3.0, poll)
