"""Audit rows a viewer writes: ONE ``series.view`` per series opened, none per slice rendered
(NiceGUI's simulated ``User``). The series is a real 150-image GE fMRI series of tests/data
(15 positions x 10 time points, 64 x 64), scrolled with the slider and the next button."""

from __future__ import annotations

import json
from pathlib import Path

from nicegui import ui

from appliance.audit.models import Actor
from appliance.auth.models import Role
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
