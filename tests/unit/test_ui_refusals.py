"""The analysis screen says its refusals in the screen's language, never the service's
English: why no series can be analysed (series by series), the 409 of a study that started
arriving again after Run was offered, and the report screen's 409 of a stale version.
NiceGUI's simulated user, in French."""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.analysis import refusals
from appliance.analysis import service as analysis_service
from appliance.analysis.failures import failure_kind
from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.reports import service as reports
from appliance.reports.models import ReportCreate, ReportUpdate
from tests.dicom_files import DATA
from tests.reporting import settle
from tests.unit.test_ui_screens import Screen, ct_study, import_set, run

SIX_FRAMES = DATA / "mr_enhanced_multiframe/siemens_xa10/6_1.dcm"


async def _sign_in_french(s: Screen) -> None:
    await s.user.open("/login")
    await s.see("Sign in")
    s.user.find("Français").click()  # the session's language, kept for the session
    await s.see("Connexion")
    await s.sign_in(s.add_user(Role.RADIOLOGIST))
    await s.see("Liste de travail")


def test_series_refusals_are_translated(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        stored = s.ctx.ingestor.ingest(SIX_FRAMES.read_bytes(), source="t",
                                       actor=Actor.system("test"))
        assert stored.outcome == "stored"
        settle(s.db)
        (study_id,) = s.db.execute("SELECT id FROM studies").fetchone()
        english = refusals.words(analysis_service.study_refusals(s.db, study_id))
        assert failure_kind(english) == "no_series"
        s.db.table("analyses").insert({
            "id": "refused-1", "study_id": study_id, "analysis_type": "primary",
            "status": "failed", "stage": "preparing", "created_at": "2026-01-01T00:00:00Z",
            "completed_at": "2026-01-01T00:00:01Z", "error": english,
        })
        await _sign_in_french(s)
        await s.user.open(f"/analysis/{study_id}")
        await s.see(marker="analysis-failure")
        await s.see(marker="analysis-refusals")
        await s.see("elle compte 6 coupes ou images ; il en faut au moins 10.")
        await s.user.should_not_see("at least 10 are needed")
        await s.user.should_not_see("No series of this study")

    run(tmp_path, body, ai_engine="openai", ai_endpoint="http://127.0.0.1:9/v1")


def test_a_study_arriving_again_is_refused_in_the_screen_language(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        await _sign_in_french(s)
        await s.user.open(f"/analysis/{study_id}")
        await s.see(marker="run-analysis")
        (run_button,) = s.user.find(marker="run-analysis").elements
        for _ in range(100):
            if run_button.enabled:
                break
            await asyncio.sleep(0.1)
        assert run_button.enabled
        # A new image arrives after Run was offered: the service answers 409.
        s.db.execute("UPDATE studies SET status = 'receiving', last_instance_at ="
                     " '2026-01-01T00:00:00Z' WHERE id = ?", [study_id])
        s.db.conn.commit()
        s.user.find(marker="indication").type("Céphalées.")
        s.user.find(marker="run-analysis").click()
        await s.see("L'examen est encore en cours de réception")
        await s.user.should_not_see("The study is still arriving")
        assert s.db.execute("SELECT COUNT(*) FROM analyses").fetchone()[0] == 0

    run(tmp_path, body, ai_engine="openai", ai_endpoint="http://127.0.0.1:9/v1")


def test_a_stale_report_save_is_refused_in_the_screen_language(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        report_id = reports.create(
            s.db, s.ctx.store, ReportCreate(study_id=study_id), Actor.system("test"),
            facility="Test clinic").id
        await _sign_in_french(s)
        await s.user.open(f"/report/{study_id}")
        await s.see(marker="report-save")
        # Another session saves a version meanwhile: this screen's save answers 409.
        reports.update(s.db, report_id, ReportUpdate(impression="Other session."),
                       Actor(name="dr-2", role="radiologist"))
        s.user.find(marker="section-impression").type("No acute finding.")
        s.user.find(marker="report-save").click()
        await s.see("Le compte rendu a été modifié entre-temps")
        await s.user.should_not_see("reload it")
        assert reports.load(s.db, report_id).content.impression == "Other session."

    run(tmp_path, body)


def test_every_refusal_code_and_flag_reason_has_words_in_every_catalog() -> None:
    from ai.prompts.series import REFUSAL_WORDS
    from ui import components, i18n
    from ui import refusals as screen_refusals

    assert set(REFUSAL_WORDS) <= screen_refusals.CODES
    keys = {f"refusal.{code}" for code in screen_refusals.CODES}
    keys |= {f"reason.{reason}" for reason in components.FLAG_REASONS | {"other"}}
    keys |= {f"error.{code}" for code in components.ERROR_CODES}
    for code in i18n.languages():
        assert keys - set(i18n.catalog(code)) == set(), code
