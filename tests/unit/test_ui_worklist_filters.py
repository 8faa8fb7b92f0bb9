"""The worklist's filters on the screen (NiceGUI's simulated ``User``): the six studies of the
media set plus a copy of the real chest radiograph dated today; one study with an AI draft, one
handed over, one signed, one that arrived two days ago. Choosing each filter shows exactly its
studies, with the total; the handed-over chip explains itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nicegui import ui

from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.db.rows import iso
from appliance.reports import service as reports
from appliance.reports.models import FinalizeRequest, ReportCreate
from appliance.studies.worklist_filters import site_day
from tests.reporting import insert_completed_analysis, radiograph_copy
from tests.unit.test_ui_screens import Screen, import_set, run
from ui import mount

RADIOLOGIST = Actor(name="radiologist-1", role="radiologist")
TECHNICIAN = Actor(name="technician-1", role="technician")


def _draft(s: Screen, study_id: str, *, from_analysis: bool) -> str:
    analysis_id = insert_completed_analysis(s.db, study_id) if from_analysis else None
    created = reports.create(
        s.db, s.ctx.store, ReportCreate(study_id=study_id, analysis_id=analysis_id),
        RADIOLOGIST, facility="Test clinic",
    )
    return created.id


def _shown(s: Screen) -> set[str]:
    """The studies whose cards show now (none: the empty-list line shows instead)."""
    with s.user:
        try:
            cards = s.user.find(marker="study-card").elements
        except AssertionError:
            return set()
        return {str(element.props["data-study"]) for element in cards}


async def _expect(s: Screen, studies: set[str]) -> None:
    """Wait (up to ~10 s, the list is read off the event loop) until exactly ``studies`` show,
    with their count."""
    for _ in range(100):
        if _shown(s) == studies:
            break
        await asyncio.sleep(0.1)
    assert _shown(s) == studies
    if studies:
        await s.see(f"{len(studies)} shown of {len(studies)}")
    else:
        await s.see(marker="worklist-empty")


def _set(s: Screen, marker: str, value: object) -> None:
    with s.user:
        element = s.user.find(marker=marker).elements.pop()
        assert isinstance(element, ui.select | ui.switch)
        element.set_value(value)


def test_the_status_filters_are_the_services() -> None:
    assert mount.worklist.STATUS_FILTERS == (
        "all", "urgent", "receiving", "stable", "volume_ready", "analyzing", "unreported",
        "draft_ready", "handed_over", "signed", "synced")


def test_worklist_filters_by_report_status_and_day(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        media = import_set(s)
        ai_draft, handed, signed, old = media[:4]
        _draft(s, ai_draft, from_analysis=True)
        reports.hand_over(s.db, _draft(s, handed, from_analysis=True), TECHNICIAN)
        reports.finalize(s.db, _draft(s, signed, from_analysis=False),
                         FinalizeRequest(ai_findings_reviewed=True), RADIOLOGIST)
        today = radiograph_copy(s.ctx, "Today", site_day(s.settings.timezone).study_date)
        two_days_ago = iso(datetime.now(UTC) - timedelta(days=2))  # as if it arrived then
        s.db.execute("UPDATE studies SET created_at = ? WHERE id = ?", (two_days_ago, old))
        s.db.conn.commit()
        everyone = {*media, today}
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("7 shown of 7")
        await s.see("handed over")  # the chip; tapping it tells what it means
        s.user.find("handed over").click()
        await s.see("The draft was handed over to a radiologist, who reads and signs it.")

        expected = {
            "unreported": everyone - {signed},
            "draft_ready": {ai_draft},
            "handed_over": {handed},
            "signed": {signed},
            "urgent": set(),
        }
        for status, studies in expected.items():
            _set(s, "filter-status", status)
            await _expect(s, studies)
        _set(s, "filter-status", "all")
        await _expect(s, everyone)
        _set(s, "filter-today", True)
        await _expect(s, {today})
        _set(s, "filter-today", False)
        _set(s, "filter-arrived-today", True)
        await _expect(s, everyone - {old})
        _set(s, "filter-status", "unreported")
        await _expect(s, everyone - {old, signed})

    run(tmp_path, body)


def test_ai_draft_ready_chip_leaves_once_handed_over_or_signed(tmp_path: Path) -> None:
    """Three studies with a finished analysis: a draft, a draft handed over, a signed report.
    Only the first still says "AI draft ready"; the others say handed over and final."""

    def chip_texts(s: Screen) -> list[str]:
        with s.user:
            return [str(c.text) for c in s.user.find(kind=ui.chip).elements]

    async def body(s: Screen) -> None:
        draft, handed, signed = import_set(s)[:3]
        _draft(s, draft, from_analysis=True)
        reports.hand_over(s.db, _draft(s, handed, from_analysis=True), TECHNICIAN)
        reports.finalize(s.db, _draft(s, signed, from_analysis=True),
                         FinalizeRequest(ai_findings_reviewed=True), RADIOLOGIST)
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("handed over")
        await s.see("final")
        texts = chip_texts(s)
        assert texts.count("AI draft ready") == 1, texts
        assert texts.count("handed over") == 1 and texts.count("final") == 1, texts

    run(tmp_path, body)
