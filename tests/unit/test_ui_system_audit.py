"""The System screen's audit log and turnaround card through NiceGUI's simulated user: names and
MRNs shown for the administrator, the action filter, the CSV export (audited) and the median
turnaround per day."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from nicegui import ui

from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.patients import service as patients
from appliance.patients.models import PatientCreate
from tests.unit.test_ui_screens import Screen, audit_actions, ct_study, draft, import_set, run


def test_admin_reads_names_and_mrns_filters_and_exports(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        admin = s.add_user(Role.ADMIN)
        s.db.execute("UPDATE users SET full_name = 'Ada Admin' WHERE username = ?", (admin,))
        patients.create(
            s.db,
            PatientCreate(patient_id="MRN-SCREEN-7", first_name="Ann", last_name="Lee"),
            Actor(name=admin, role="admin"),
        )
        await s.sign_in(admin)
        await s.see("Worklist")
        await s.user.open("/system")
        await s.see("Audit log")
        rows = await _rows(s, "audit-table", lambda r: any(x["mrn"] == "MRN-SCREEN-7" for x in r))
        created = next(r for r in rows if r["action"] == "patient.create")
        assert (created["mrn"], created["actor"]) == ("MRN-SCREEN-7", "Ada Admin (admin-1)")
        await s.see("Turnaround, last 7 days (median from arrival)")
        newest = (await _rows(s, "turnaround", bool))[0]
        assert (newest["arrived"], newest["signed"], newest["to_signed"]) == (0, 0, "-")
        assert audit_actions(s.db, "audit.read")  # resolving names and MRNs is a PHI read
        s.user.find("Action (e.g. report. or auth.login)").type("auth.")
        filtered = await _rows(s, "audit-table", lambda r: bool(r) and all(
            x["action"].startswith("auth.") for x in r))
        assert all(x["mrn"] == "" for x in filtered)
        s.user.find("Export CSV").click()
        for _ in range(200):
            if audit_actions(s.db, "audit.export"):
                break
            await asyncio.sleep(0.05)
        (exported,) = audit_actions(s.db, "audit.export")
        assert '"action":"auth."' in str(exported["detail"])

    run(tmp_path, body)


async def _rows(s: Screen, marker: str, ready: Any) -> list[dict[str, Any]]:
    """The rows of the table marked ``marker`` once ``ready(rows)`` holds (filled off the loop)."""
    for _ in range(200):
        (table,) = s.user.find(marker=marker).elements
        assert isinstance(table, ui.table)
        if ready(table.rows):
            return list(table.rows)
        await asyncio.sleep(0.05)
    raise AssertionError(f"table {marker} never got the expected rows: {table.rows}")


def test_report_screen_shows_the_study_turnaround(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        draft(s, study_id)
        await s.sign_in(s.add_user(Role.RADIOLOGIST))
        await s.see("Worklist")
        await s.user.open(f"/report/{study_id}")
        await s.see("Turnaround")
        await s.see(marker="turnaround-strip")
        # Complete (imported whole) and not yet analysed, handed over or signed.
        labels = [
            str(getattr(e, "text", ""))
            for e in s.user.find(marker="turnaround-strip").elements
            for e in e.default_slot.children
        ]
        assert any(text.startswith("· Complete +") for text in labels), labels
        for step in ("AI analysed", "Handed over", "Signed"):
            assert f"· {step} not yet" in labels, labels

    run(tmp_path, body)
