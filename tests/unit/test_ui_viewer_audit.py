"""Audit rows the screens write (NiceGUI's simulated ``User``): ONE ``series.view`` per series
opened, none per slice rendered; polling a running analysis writes none, its result one. The
series is a real 150-image GE fMRI series of tests/data (15 positions x 10 time points,
64 x 64), scrolled with the slider and the next button."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nicegui import ui

from appliance.audit.models import Actor
from appliance.auth.models import Role
from tests.reporting import ingest_ct, insert_analysis
from tests.unit.test_ui_screens import Screen, audit_actions, run

SERIES = Path(__file__).resolve().parents[1] / "data" / "mr_ge_fmri_2series_4d" / "mr_0004"
READS = ("series.view", "instance.list", "instance.preview")


def test_scrolling_a_150_image_series_writes_one_audit_row(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        for path in sorted(SERIES.iterdir()):
            result = s.ctx.ingestor.ingest(path.read_bytes(), source="test",
                                           actor=Actor.system("test"))
            assert result.outcome == "stored", result
        (study_id,) = s.db.execute("SELECT id FROM studies").fetchone()
        (series_id,) = s.db.execute("SELECT id FROM series").fetchone()
        await s.sign_in(s.add_user(Role.RADIOLOGIST))
        await s.see("Worklist")
        before = s.db.execute("SELECT MAX(id) FROM audit_log").fetchone()[0]
        await s.user.open(f"/viewer/{study_id}")
        await s.see("Slice 76 / 150")  # the middle one
        for number in range(1, 151, 7):  # a slice every 7, each rendered
            with s.user:
                (slider,) = s.user.find(kind=ui.slider).elements
                assert isinstance(slider, ui.slider)
                slider.set_value(number)
            await s.see(f"Slice {number} / 150")
        for number in range(149, 151):
            s.user.find(marker="slice-next").click()
            await s.see(f"Slice {number} / 150")
        rows = [
            dict(r)
            for r in s.db.query(
                "SELECT action, object_id, detail FROM audit_log WHERE id > ? AND action IN"
                " (?, ?, ?)", [before, *READS])
        ]
        assert [(r["action"], r["object_id"]) for r in rows] == [("series.view", series_id)]
        assert json.loads(str(rows[0]["detail"])) == {"instances": 150, "study_id": study_id}
        assert audit_actions(s.db, "instance.preview") == []

    run(tmp_path, body)


def test_polling_a_running_analysis_is_not_audited_its_result_once(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        ct = ingest_ct(s.ctx)
        analysis_id = insert_analysis(s.db, ct)
        s.db.execute("UPDATE analyses SET status = 'running', stage = 'inferring' WHERE id = ?",
                     (analysis_id,))
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        await s.user.open(f"/analysis/{ct.study_id}")
        await s.see("Working: 0% (inferring)")
        await asyncio.sleep(3.5)  # three polls at 1 s
        assert audit_actions(s.db, "analysis.read") == []
        s.db.execute("UPDATE analyses SET status = 'completed', stage = 'done' WHERE id = ?",
                     (analysis_id,))
        await s.see("finished")
        await asyncio.sleep(2.5)  # polls after the result: none
        assert len(audit_actions(s.db, "analysis.read")) == 1

    run(tmp_path, body)
