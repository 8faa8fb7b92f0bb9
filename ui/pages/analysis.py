"""Analysis: primary, comparison (the prior is offered automatically) or focused; the clinical
indication; live progress from the job; a plain message and the next step when no engine is
available. Results are shown only as the safety layer stored them (hedged, with confidence,
disclaimer and UNVERIFIED)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nicegui import ui

from appliance.analysis import completeness
from appliance.analysis import service as analysis_service
from appliance.analysis.models import AnalysisOut, AnalysisRequest
from appliance.errors import Forbidden
from appliance.jobs import service as jobs
from appliance.jobs.models import JobOut
from appliance.studies import service as studies
from appliance.studies.models import StudyDetail
from ui import components, format, i18n, refusals, runtime, session

TYPES = ("primary", "comparison", "focused")
RUNNING = ("queued", "running")


def register() -> None:
    @ui.page("/analysis/{study_id}")
    def analysis_page(study_id: str) -> components.Guarded:
        user = components.guard_page(session.CLINICAL)
        if not isinstance(user, session.SessionUser):
            return user
        build(user, study_id)
        return None


@dataclass
class Setup:
    study: StudyDetail
    prior: StudyDetail | None
    engine: dict[str, Any]
    latest: AnalysisOut | None
    arrival: completeness.Arrival


def _setup(study_id: str, user: session.SessionUser) -> Setup:
    rt = runtime.get()
    db = rt.db()
    study = studies.get_study(db, study_id, user.actor)
    modality = next((m for m in ("CT", "MR", *study.modalities) if m in study.modalities), None)
    prior_id = analysis_service.find_prior(db, study_id, modality) if modality else None
    prior = studies.get_study(db, prior_id, user.actor) if prior_id else None
    found = analysis_service.study_analyses(db, study_id, user.actor)
    engine = analysis_service.engine_info(rt.settings, db)
    return Setup(study, prior, engine, found[0] if found else None,
                 completeness.arrival(db, study_id, rt.settings.stable_age_s))


def _request(body: AnalysisRequest, user: session.SessionUser) -> tuple[str, str]:
    rt = runtime.get()
    runner = rt.state("jobs")
    if runner is not None:
        enqueue = runner.enqueue
    else:

        def enqueue(kind: str, payload: dict[str, Any], actor: Any) -> Any:
            return jobs.enqueue(rt.db(), kind, payload, actor)

    return analysis_service.request_analysis(rt.ctx, body, user.actor, enqueue)


def _poll(analysis_id: str, job_id: str | None, user: session.SessionUser
          ) -> tuple[JobOut | None, AnalysisOut | None]:
    db = runtime.get().db()
    job = jobs.get(db, job_id) if job_id else None
    if job is not None and job.status in RUNNING:
        return job, None
    # Polling is not audited: the status alone (no patient data, no findings) until it ends,
    # then ONE audited read of the result.
    if analysis_service.analysis_status(db, analysis_id) in RUNNING:
        return job, None
    return job, analysis_service.get_analysis(db, analysis_id, user.actor)


def _arrival(study_id: str) -> completeness.Arrival:
    rt = runtime.get()
    return completeness.arrival(rt.db(), study_id, rt.settings.stable_age_s)


def arrival_words(found: completeness.Arrival) -> str:
    """The API's 409 sentence, from the catalog."""
    when = (found.complete_at or "")[:19].replace("T", " ")
    return i18n.t("analysis.arriving", count=found.instances, when=when)


def findings_panel(result: AnalysisOut) -> None:
    """An analysis result with its safety framing (banner, UNVERIFIED, confidence, disclaimer)."""
    components.ai_banner()
    with ui.row().classes("items-center gap-2"):
        components.chip(result.verification_flag, "red-9", "gpp_maybe")
        if result.partial:
            ui.label(i18n.t("analysis.partial", count=result.instance_count or 0)).classes(
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
        ui.label(result.disclaimer).classes("text-body2 radiant-muted").props(
            "data-testid=disclaimer").mark("disclaimer")


def build(user: session.SessionUser, study_id: str) -> None:
    with components.frame(user, ""):
        holder = ui.column().classes("w-full gap-3")
        with holder:
            ui.label(i18n.t("common.loading")).classes("text-h6 radiant-muted")

    async def load() -> None:
        setup = await components.load_or_not_found(holder, lambda: _setup(study_id, user))
        if setup is not None:
            with holder:
                _form(user, setup)

    ui.timer(0.01, load, once=True)


def _form(user: session.SessionUser, setup: Setup) -> None:
    study = setup.study
    state: dict[str, Any] = {"analysis_id": None, "job_id": None, "shown": None}
    arrived: dict[str, bool] = {"complete": False}
    with ui.row().classes("w-full items-center gap-2"):
        ui.label(i18n.t("analysis.title")).classes("text-h4")
        ui.label(format.patient_name(study.patient) + " · " + (study.description or "")).classes(
            "text-h6 radiant-muted")
        ui.space()
        ui.button(i18n.t("action.view"), icon="visibility",
                  on_click=lambda: ui.navigate.to(f"/viewer/{study.id}")).props(
            "no-caps outline size=lg")
    engine_name = str(setup.engine.get("name") or "none")
    if engine_name == "none":
        with ui.card().classes("radiant-card w-full q-pa-md").mark("no-engine"):
            ui.label(i18n.t("analysis.no_engine")).classes("text-h6 radiant-error")
            ui.label(i18n.t("analysis.no_engine_next")).classes("text-body1")
    else:
        model = setup.engine.get("model") or setup.engine.get("online_model") or "-"
        ui.label(i18n.t("analysis.engine", engine=engine_name, model=model)).classes(
            "radiant-muted")
    with ui.card().classes("radiant-card w-full q-pa-md"):
        kind = ui.toggle({name: i18n.t(f"analysis.type.{name}") for name in TYPES},
                         value="primary").props("no-caps size=lg data-testid=analysis-type")
        prior_line = ui.label().classes("text-body1").props("data-testid=prior")
        target = ui.input(i18n.t("analysis.target")).props(
            "outlined data-testid=target").classes("w-full").mark("target")
        indication = ui.textarea(i18n.t("analysis.indication")).props(
            "outlined autogrow data-testid=indication").classes("w-full").mark("indication")
        message = ui.label().classes("radiant-error text-body1").props(
            "role=alert data-testid=analysis-message").mark("analysis-message")
        arrival_line = ui.label().classes("radiant-error text-body1").props(
            "role=status data-testid=arrival").mark("arrival")
        arrival_line.set_visibility(False)
        with ui.row().classes("items-center gap-2"):
            run_button = ui.button(i18n.t("analysis.run"), icon="play_arrow").props(
                "no-caps size=xl color=primary data-testid=run-analysis").mark("run-analysis")
            partial_button = ui.button(i18n.t("analysis.run_partial"), icon="warning").props(
                "no-caps size=lg outline color=warning data-testid=run-partial").mark(
                "run-partial")
        partial_button.set_visibility(False)
        run_button.disable()  # until the study is known to be complete
    with ui.card().classes("radiant-card w-full q-pa-md"):
        progress = ui.linear_progress(value=0, show_value=False, size="24px").props(
            "rounded color=deep-purple-4 data-testid=analysis-progress")
        stage = ui.label(i18n.t("analysis.idle")).classes("text-body1").props(
            "data-testid=analysis-stage").mark("analysis-stage")
        results = ui.column().classes("w-full gap-2").mark("analysis-results")

    def on_kind() -> None:
        chosen = str(kind.value)
        target.set_visibility(chosen == "focused")
        prior_line.set_visibility(chosen == "comparison")
        if setup.prior is not None:
            prior = setup.prior
            prior_line.set_text(i18n.t("analysis.prior", day=format.study_day(prior.study_date)
                                       or format.received(prior.created_at),
                                       description=prior.description or "-"))
        else:
            prior_line.set_text(i18n.t("analysis.no_prior"))

    kind.on_value_change(on_kind)
    on_kind()

    def show_result(result: AnalysisOut) -> None:
        results.clear()
        with results:
            if result.status == "failed":
                ui.label(i18n.t(f"analysis.failure.{result.failure or 'unexpected'}")).classes(
                    "radiant-error text-body1").props("role=alert").mark("analysis-failure")
                if result.failure == "no_series":
                    # The selection's own reasons, series by series, in the screen's words.
                    refused = ui.column().classes("gap-1").mark("analysis-refusals")
                    ui.timer(0.01, lambda: refusals.show_series(refused, study.id), once=True)
                return
            findings_panel(result)
            with ui.row().classes("gap-2"):
                ui.button(i18n.t("action.view"), icon="visibility",
                          on_click=lambda: ui.navigate.to(f"/viewer/{study.id}")).props(
                    "no-caps size=lg outline data-testid=result-viewer")
                ui.button(i18n.t("analysis.to_report"), icon="description",
                          on_click=lambda: ui.navigate.to(f"/report/{study.id}")).props(
                    "no-caps size=lg color=primary data-testid=to-report")

    async def run(partial: bool = False) -> None:
        message.set_text("")
        current = session.require(session.CLINICAL)
        if current is None:
            components.refuse()
            return
        chosen = str(kind.value)
        text = str(indication.value or "").strip()
        focus = str(target.value or "").strip()
        if not text:
            message.set_text(i18n.t("analysis.need_indication"))
            return
        if chosen == "focused" and not focus:
            message.set_text(i18n.t("analysis.need_target"))
            return
        if chosen == "comparison" and setup.prior is None:
            message.set_text(i18n.t("analysis.no_prior"))
            return
        body = AnalysisRequest(
            study_id=study.id,
            clinical_indication=text[:2000],
            analysis_type=chosen,  # type: ignore[arg-type]
            prior_study_id=setup.prior.id if chosen == "comparison" and setup.prior else None,
            target=focus[:500] if chosen == "focused" else None,
            analyse_partial=partial,
        )
        run_button.disable()
        try:
            analysis_id, job_id = await runtime.off_loop(lambda: _request(body, current))
        except analysis_service.EngineNotConfigured:
            message.set_text(i18n.t("analysis.no_engine") + " " + i18n.t("analysis.no_engine_next"))
            enable_run()
            return
        except completeness.StudyIncomplete as exc:  # more images arrived meanwhile
            message.set_text(refusals.arriving_words(exc, study.id))
            arrival_timer.activate()
            return
        except Forbidden:
            components.refuse()
            enable_run()
            return
        except Exception as exc:
            components.notify_error(exc)
            enable_run()
            return
        state.update(analysis_id=analysis_id, job_id=job_id, shown=None)
        results.clear()
        stage.set_text(i18n.t("analysis.queued"))
        progress.set_value(0)

    def enable_run() -> None:
        if arrived["complete"] and engine_name != "none":
            run_button.enable()

    run_button.on_click(lambda: run(False))
    partial_button.on_click(lambda: run(True))
    def show_arrival(found: completeness.Arrival) -> None:
        arrived["complete"] = found.complete
        busy = state["analysis_id"] is not None and state["shown"] != state["analysis_id"]
        arrival_line.set_visibility(not found.complete)
        partial_button.set_visibility(
            not found.complete and user.may(session.SIGNERS) and engine_name != "none")
        if not found.complete:
            arrival_line.set_text(arrival_words(found))
            run_button.disable()
        elif not busy:
            enable_run()

    async def follow_arrival() -> None:
        """Run stays disabled while the study arrives; the count updates live."""
        try:
            found = await runtime.off_loop(lambda: _arrival(study.id))
        except Exception:
            return
        show_arrival(found)
        if found.complete:
            arrival_timer.deactivate()

    show_arrival(setup.arrival)
    arrival_timer = ui.timer(2.0, follow_arrival, active=not setup.arrival.complete)

    async def poll() -> None:
        analysis_id = state["analysis_id"]
        if analysis_id is None or state["shown"] == analysis_id:
            return
        try:
            job, result = await runtime.off_loop(
                lambda: _poll(analysis_id, state["job_id"], user))
        except Exception as exc:
            components.notify_error(exc)
            state["shown"] = analysis_id
            return
        if job is not None and result is None:
            progress.set_value(job.progress)
            stage.set_text(i18n.t("analysis.running", percent=round(job.progress * 100),
                                  stage=job.stage or "-"))
            return
        if result is None:
            return
        if result.status in RUNNING:
            stage.set_text(i18n.t("analysis.running", percent=0, stage=result.stage or "-"))
            return
        state["shown"] = analysis_id
        # A full bar means done: a failed or cancelled analysis leaves it where it stopped.
        if result.status in ("completed", "needs_review"):
            progress.set_value(1)
        else:
            progress.props("color=negative")
        stage.set_text(i18n.t(f"analysis.status.{result.status}"))
        enable_run()
        show_result(result)

    ui.timer(1.0, poll)
    latest = setup.latest
    if latest is not None:
        if latest.status in RUNNING:
            state.update(analysis_id=latest.id, job_id=None)
            stage.set_text(i18n.t("analysis.running", percent=0, stage=latest.stage or "-"))
        else:
            stage.set_text(i18n.t("analysis.previous", status=i18n.t(
                f"analysis.status.{latest.status}")))
            show_result(latest)
