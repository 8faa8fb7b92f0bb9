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
from ui.pages.analysis_result import arrival_words, engine_line, result_panel

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
    return analysis_service.request_analysis(rt.ctx, body, user.actor, rt.services.jobs.enqueue)


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


def build(user: session.SessionUser, study_id: str) -> None:
    with components.frame(user, ""):
        holder = ui.column().classes("w-full gap-3")
        with holder:
            ui.label(i18n.t("common.loading")).classes("text-h6 radiant-muted")

    async def load() -> None:
        setup = await components.load_or_not_found(holder, lambda: _setup(study_id, user))
        if setup is not None:
            with holder:
                AnalysisForm(user, setup).build()

    ui.timer(0.01, load, once=True)


class AnalysisForm:
    """The request form, its live progress and the result for one study."""

    def __init__(self, user: session.SessionUser, setup: Setup) -> None:
        self.user = user
        self.setup = setup
        self.study = setup.study
        self.engine_name = str(setup.engine.get("name") or "none")
        self.analysis_id: str | None = None
        self.job_id: str | None = None
        self.shown: str | None = None
        self.complete = False

    def build(self) -> None:
        study, setup = self.study, self.setup
        with ui.row().classes("w-full items-center gap-2"):
            ui.label(i18n.t("analysis.title")).classes("text-h4")
            ui.label(format.patient_name(study.patient) + " · " + (study.description or "")
                     ).classes("text-h6 radiant-muted")
            ui.space()
            ui.button(i18n.t("action.view"), icon="visibility",
                      on_click=lambda: ui.navigate.to(f"/viewer/{study.id}")).props(
                "no-caps outline size=lg")
        engine_line(setup.engine)
        self._request_card()
        with ui.card().classes("radiant-card w-full q-pa-md"):
            self.progress = ui.linear_progress(value=0, show_value=False, size="24px").props(
                "rounded color=deep-purple-4 data-testid=analysis-progress")
            self.stage = ui.label(i18n.t("analysis.idle")).classes("text-body1").props(
                "data-testid=analysis-stage").mark("analysis-stage")
            self.results = ui.column().classes("w-full gap-2").mark("analysis-results")
        self.kind.on_value_change(self.on_kind)
        self.on_kind()
        self.run_button.on_click(lambda: self.run(False))
        self.partial_button.on_click(lambda: self.run(True))
        self.show_arrival(setup.arrival)
        self.arrival_timer = ui.timer(2.0, self.follow_arrival,
                                      active=not setup.arrival.complete)
        ui.timer(1.0, self.poll)
        self._show_latest(setup.latest)

    def _request_card(self) -> None:
        with ui.card().classes("radiant-card w-full q-pa-md"):
            self.kind = ui.toggle({name: i18n.t(f"analysis.type.{name}") for name in TYPES},
                                  value="primary").props(
                "no-caps size=lg data-testid=analysis-type")
            self.prior_line = ui.label().classes("text-body1").props("data-testid=prior")
            self.target = ui.input(i18n.t("analysis.target")).props(
                "outlined data-testid=target").classes("w-full").mark("target")
            self.indication = ui.textarea(i18n.t("analysis.indication")).props(
                "outlined autogrow data-testid=indication").classes("w-full").mark("indication")
            self.message = ui.label().classes("radiant-error text-body1").props(
                "role=alert data-testid=analysis-message").mark("analysis-message")
            self.arrival_line = ui.label().classes("radiant-error text-body1").props(
                "role=status data-testid=arrival").mark("arrival")
            self.arrival_line.set_visibility(False)
            with ui.row().classes("items-center gap-2"):
                self.run_button = ui.button(i18n.t("analysis.run"), icon="play_arrow").props(
                    "no-caps size=xl color=primary data-testid=run-analysis").mark(
                    "run-analysis")
                self.partial_button = ui.button(
                    i18n.t("analysis.run_partial"), icon="warning").props(
                    "no-caps size=lg outline color=warning data-testid=run-partial").mark(
                    "run-partial")
            self.partial_button.set_visibility(False)
            self.run_button.disable()  # until the study is known to be complete

    def _show_latest(self, latest: AnalysisOut | None) -> None:
        if latest is None:
            return
        if latest.status in RUNNING:
            self.analysis_id, self.job_id = latest.id, None
            self.stage.set_text(
                i18n.t("analysis.running", percent=0, stage=latest.stage or "-"))
        else:
            self.stage.set_text(i18n.t("analysis.previous", status=i18n.t(
                f"analysis.status.{latest.status}")))
            self.show_result(latest)

    def on_kind(self) -> None:
        chosen = str(self.kind.value)
        self.target.set_visibility(chosen == "focused")
        self.prior_line.set_visibility(chosen == "comparison")
        if self.setup.prior is not None:
            prior = self.setup.prior
            self.prior_line.set_text(i18n.t(
                "analysis.prior",
                day=format.study_day(prior.study_date) or format.received(prior.created_at),
                description=prior.description or "-"))
        else:
            self.prior_line.set_text(i18n.t("analysis.no_prior"))

    def show_result(self, result: AnalysisOut) -> None:
        self.results.clear()
        with self.results:
            result_panel(self.study.id, result)

    def _body(self, partial: bool) -> AnalysisRequest | None:
        """The request the form describes, or None with the reason shown."""
        chosen = str(self.kind.value)
        text = str(self.indication.value or "").strip()
        focus = str(self.target.value or "").strip()
        prior = self.setup.prior
        if not text:
            self.message.set_text(i18n.t("analysis.need_indication"))
            return None
        if chosen == "focused" and not focus:
            self.message.set_text(i18n.t("analysis.need_target"))
            return None
        if chosen == "comparison" and prior is None:
            self.message.set_text(i18n.t("analysis.no_prior"))
            return None
        return AnalysisRequest(
            study_id=self.study.id,
            clinical_indication=text[:2000],
            analysis_type=chosen,  # type: ignore[arg-type]
            prior_study_id=prior.id if chosen == "comparison" and prior else None,
            target=focus[:500] if chosen == "focused" else None,
            analyse_partial=partial,
        )

    async def run(self, partial: bool = False) -> None:
        self.message.set_text("")
        current = session.require(session.CLINICAL)
        if current is None:
            components.refuse()
            return
        body = self._body(partial)
        if body is None:
            return
        self.run_button.disable()
        try:
            analysis_id, job_id = await runtime.off_loop(lambda: _request(body, current))
        except analysis_service.EngineNotConfigured:
            self.message.set_text(
                i18n.t("analysis.no_engine") + " " + i18n.t("analysis.no_engine_next"))
            self.enable_run()
            return
        except completeness.StudyIncomplete as exc:  # more images arrived meanwhile
            self.message.set_text(refusals.arriving_words(exc, self.study.id))
            self.arrival_timer.activate()
            return
        except Forbidden:
            components.refuse()
            self.enable_run()
            return
        except Exception as exc:
            components.notify_error(exc)
            self.enable_run()
            return
        self.analysis_id, self.job_id, self.shown = analysis_id, job_id, None
        self.results.clear()
        self.stage.set_text(i18n.t("analysis.queued"))
        self.progress.set_value(0)

    def enable_run(self) -> None:
        if self.complete and self.engine_name != "none":
            self.run_button.enable()

    def show_arrival(self, found: completeness.Arrival) -> None:
        self.complete = found.complete
        busy = self.analysis_id is not None and self.shown != self.analysis_id
        self.arrival_line.set_visibility(not found.complete)
        self.partial_button.set_visibility(
            not found.complete and self.user.may(session.SIGNERS) and self.engine_name != "none")
        if not found.complete:
            self.arrival_line.set_text(arrival_words(found))
            self.run_button.disable()
        elif not busy:
            self.enable_run()

    async def follow_arrival(self) -> None:
        """Run stays disabled while the study arrives; the count updates live."""
        try:
            found = await runtime.off_loop(lambda: _arrival(self.study.id))
        except Exception:
            return
        self.show_arrival(found)
        if found.complete:
            self.arrival_timer.deactivate()

    async def poll(self) -> None:
        analysis_id = self.analysis_id
        if analysis_id is None or self.shown == analysis_id:
            return
        job_id = self.job_id
        try:
            job, result = await runtime.off_loop(lambda: _poll(analysis_id, job_id, self.user))
        except Exception as exc:
            components.notify_error(exc)
            self.shown = analysis_id
            return
        if job is not None and result is None:
            self.progress.set_value(job.progress)
            self.stage.set_text(i18n.t("analysis.running", percent=round(job.progress * 100),
                                       stage=job.stage or "-"))
            return
        if result is None:
            return
        if result.status in RUNNING:
            self.stage.set_text(i18n.t("analysis.running", percent=0, stage=result.stage or "-"))
            return
        self.shown = analysis_id
        # A full bar means done: a failed or cancelled analysis leaves it where it stopped.
        if result.status in ("completed", "needs_review"):
            self.progress.set_value(1)
        else:
            self.progress.props("color=negative")
        self.stage.set_text(i18n.t(f"analysis.status.{result.status}"))
        self.enable_run()
        self.show_result(result)
