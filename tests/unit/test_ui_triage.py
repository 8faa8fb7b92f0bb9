"""Triage on the screens (NiceGUI's simulated ``User``): the OpenAI-protocol test server answers
a subdural haematoma for the real GE head CT (the other studies come from the media set); the
worklist puts it first with a critical chip, the alert banner shows on every signed-in screen
and is acknowledged by name (audited); status chips explain themselves; the table view lists
the studies in 48 px rows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nicegui import ui

from appliance.analysis import service as analysis
from appliance.analysis.models import AnalysisRequest
from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.jobs import service as jobs
from tests.ai_server import AIServer, Scripted, chat_completion
from tests.integration.test_triage import SUBDURAL
from tests.reporting import ingest_ct
from tests.unit.test_ui_screens import Screen, audit_actions, import_set, run

ACTOR = Actor.system("test")


class _Progress:
    """The job context the pipeline reports to (run here without the job runner)."""

    def progress(self, stage: str, fraction: float) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


def analyse(s: Screen, study_id: str) -> str:
    """The real pipeline (prepare, engine over HTTP, parse, safety, store) for one study."""
    ctx = s.ctx

    def enqueue(kind: str, payload: dict[str, object], actor: Actor) -> jobs.Enqueued:
        return jobs.enqueue(ctx.pool.get(), kind, payload, actor)

    analysis_id, _ = analysis.request_analysis(
        ctx, AnalysisRequest(study_id=study_id), ACTOR, enqueue
    )
    analysis.run_analysis(
        ctx, analysis_id, ACTOR, None, _Progress(), lambda: analysis.current_engine(ctx)
    )
    return analysis_id


def test_a_critical_answer_is_sorted_first_alerted_and_acknowledged(tmp_path: Path) -> None:
    with AIServer(default=Scripted(body=chat_completion(SUBDURAL))) as server:

        async def body(s: Screen) -> None:
            head = ingest_ct(s.ctx).study_id  # the real head CT, the oldest arrival
            import_set(s)
            await asyncio.to_thread(analyse, s, head)
            await s.sign_in(s.add_user(Role.TECHNICIAN))
            await s.see("7 shown of 7")
            await s.see("critical (AI)")
            # Elements come as a set: their ids give the order they were laid out in.
            cards = sorted(s.user.find(marker="study-card").elements, key=lambda e: e.id)
            assert cards[0].props["data-study"] == head  # first, though not the newest

            # The banner: on the worklist and on another screen, with the instruction.
            await s.see(marker="critical-alert")
            await s.see("Call the radiologist now. The AI flag is unverified: the radiologist "
                        "confirms or clears it.")
            await s.user.open("/import")
            await s.see(marker="critical-alert")

            # A name is required; then it is acknowledged, audited with the name, and gone.
            s.user.find(marker="alert-ack").click()
            await s.see("type your name (2 to 120 characters)")
            assert not audit_actions(s.db, "triage.alert_ack")
            s.user.find(marker="alert-name").type("Amina Technician")
            s.user.find(marker="alert-ack").click()
            await s.see("Alert acknowledged.")
            await s.user.should_not_see(marker="critical-alert", retries=100)
            (row,) = audit_actions(s.db, "triage.alert_ack")
            assert json.loads(str(row["detail"]))["name"] == "Amina Technician"
            assert row["actor"] == "technician-1"
            assert len(audit_actions(s.db, "triage.alert_raise")) == 1

            # A status chip explains itself when tapped.
            await s.user.open("/")
            await s.see("7 shown of 7")
            s.user.find("critical (AI)").click()
            await s.see("The AI flags a finding that may need action within minutes. "
                        "Unverified: call the radiologist now.")

            # The dense table view lists every study, the critical one first.
            with s.user:
                (toggle,) = s.user.find(marker="worklist-view").elements
                assert isinstance(toggle, ui.toggle)
                toggle.set_value("table")
            await s.see(marker="study-row")
            rows = sorted(s.user.find(marker="study-row").elements, key=lambda e: e.id)
            assert len(rows) == 7 and rows[0].props["data-study"] == head

            # The report screen: the radiologist sees why and confirms it (audited).
            s.user.find("Sign out").click()
            await s.see(marker="sign-in")
            await s.sign_in(s.add_user(Role.RADIOLOGIST))
            await s.see("7 shown of 7")
            await s.user.open(f"/report/{head}")
            await s.see("Unverified: a radiologist confirms or clears this AI flag.")
            await s.see("Possible intracranial haemorrhage named in the findings (critical "
                        "findings list: critical (AI)).")
            s.user.find(marker="urgency-confirm").click()
            await s.see("Confirmed by a radiologist.")
            (review,) = audit_actions(s.db, "analysis.urgency_review")
            assert json.loads(str(review["detail"]))["decision"] == "confirmed"
            assert len(server.requests) == 1

        run(tmp_path, body, ai_engine="openai", ai_endpoint=server.url, ai_max_attempts=1)
