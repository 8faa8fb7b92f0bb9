"""The screens through NiceGUI's simulated ``User`` (no browser): sign-in and its errors, the
session, which actions each role sees and may take, form checks, the French catalog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlite_utils
from fastapi import FastAPI
from nicegui import app as nicegui_app
from nicegui.storage import Storage
from nicegui.testing import User
from nicegui.testing.user_simulation import user_simulation

from appliance.app import prepare
from appliance.audit.models import Actor
from appliance.auth import service as auth
from appliance.auth.models import Role, UserCreate
from appliance.config import Settings
from appliance.context import AppContext
from appliance.dicom import media
from appliance.errors import Forbidden
from appliance.reports import service as reports
from appliance.reports.models import FinalizeRequest, FindingEdit, ReportCreate, ReportUpdate
from ui import mount, runtime

PASSWORD = "correct horse battery"


@dataclass
class Screen:
    user: User
    ctx: AppContext
    settings: Settings

    @property
    def db(self) -> sqlite_utils.Database:
        return self.ctx.pool.get()

    def add_user(self, role: Role, name: str | None = None) -> str:
        username = name or f"{role.value}-1"
        auth.create_user(
            self.db, UserCreate(username=username, password=PASSWORD, role=role),
            Actor.system("test"),
        )
        return username

    async def see(self, text: str | None = None, *, marker: str | None = None) -> None:
        """Wait (up to ~10 s) for work done off the event loop to show."""
        if text is not None:
            await self.user.should_see(text, retries=100)
        else:
            await self.user.should_see(marker=marker, retries=100)

    async def sign_in(self, username: str, password: str = PASSWORD) -> None:
        await self.user.open("/login")
        self.user.find(marker="username").type(username)
        self.user.find(marker="password").type(password)
        self.user.find(marker="sign-in").click()


@asynccontextmanager
async def screen(tmp_path: Path, **overrides: object) -> AsyncIterator[Screen]:
    settings = Settings(data_dir=tmp_path / "data", **overrides)
    Storage.path = (tmp_path / "screen-storage").resolve()
    nicegui_app.storage = Storage()
    ctx = prepare(settings)
    fastapi_app = FastAPI()
    fastapi_app.state.ctx = ctx
    provisioned = runtime.unprovisioned
    runtime.unprovisioned = lambda: False  # type: ignore[assignment]  # first boot is done
    async with user_simulation() as user:
        runtime.install(runtime.Runtime(fastapi_app, ctx))
        mount.register_pages(settings, ctx)
        try:
            yield Screen(user, ctx, settings)
        finally:
            runtime.unprovisioned = provisioned
            ctx.pool.close_all()


def run(tmp_path: Path, body: Callable[[Screen], Awaitable[None]], **overrides: object) -> None:
    async def main() -> None:
        async with screen(tmp_path, **overrides) as found:
            await body(found)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        # Screen timers and pending handlers end with the simulated client; do not wait on
        # them forever (asyncio.run would).
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=2))
        loop.close()


def audit_actions(db: sqlite_utils.Database, action: str) -> list[dict[str, object]]:
    return [
        dict(row)
        for row in db.query("SELECT * FROM audit_log WHERE action = ? ORDER BY id", [action])
    ]


# ---- sign-in ------------------------------------------------------------------------------


def test_pages_need_a_session(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        for path in ("/", "/import", "/system", "/viewer/x", "/analysis/x", "/report/x"):
            await s.user.open(path)
            await s.see(marker="sign-in")

    run(tmp_path, body)


def test_empty_sign_in_is_refused_with_a_message(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.user.open("/login")
        s.user.find(marker="sign-in").click()
        await s.see("Enter your username and your password.")
        assert audit_actions(s.db, "auth.login") == []

    run(tmp_path, body)


def test_wrong_password_says_so_and_is_audited(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        name = s.add_user(Role.TECHNICIAN)
        await s.sign_in(name, "not the password")
        await s.see("Incorrect username or password.")
        await s.user.should_not_see(marker="status-mode")
        rows = audit_actions(s.db, "auth.login")
        assert [r["outcome"] for r in rows] == ["failure"]

    run(tmp_path, body)


def test_lockout_message_after_repeated_failures(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        name = s.add_user(Role.TECHNICIAN)
        for _ in range(2):
            await s.sign_in(name, "not the password")
            await s.see("Incorrect username or password.")
        await s.sign_in(name)  # the right password, but the account is locked now
        await s.see(marker="signin-message")
        await s.see("this account is locked")
        assert audit_actions(s.db, "auth.lockout")

    run(tmp_path, body, login_max_failures=2)


def test_sign_in_opens_the_worklist_and_sign_out_ends_it(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        name = s.add_user(Role.TECHNICIAN)
        await s.sign_in(name)
        await s.see("Worklist")
        await s.see(marker="worklist-empty")
        await s.see("Mode: offline")
        s.user.find("Sign out").click()
        await s.see(marker="sign-in")
        await s.user.open("/")
        await s.see(marker="sign-in")

    run(tmp_path, body)


# ---- roles ----------------------------------------------------------------------------------


def test_technician_has_no_system_page(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Import")
        await s.user.should_not_see("System")
        await s.user.open("/system")
        await s.see(marker="forbidden")
        await s.user.should_not_see(marker="switch-mode")

    run(tmp_path, body)


def test_admin_sees_the_system_page_and_switches_the_mode(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.sign_in(s.add_user(Role.ADMIN))
        await s.see("System")
        await s.user.open("/system")
        await s.see(marker="switch-mode")
        await s.see("Audit log")
        s.user.find(marker="switch-mode").click()
        await s.see("Mode: online")
        detail = audit_actions(s.db, "system.mode")[-1]["detail"]
        assert detail == '{"from":"offline","to":"online"}'

    run(tmp_path, body)


def test_french_catalog_switches_the_text(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.user.open("/login")
        await s.see("Sign in")
        s.user.find("Français").click()  # reloads the page in French
        await s.see("Connexion")
        await s.see("Identifiant")
        s.user.find(marker="sign-in").click()
        await s.see("Saisissez votre identifiant et votre mot de passe.")

    run(tmp_path, body)


# ---- studies, analysis, report --------------------------------------------------------------

DATA = Path(__file__).resolve().parents[1] / "data"
DICOMDIR_SET = DATA / "dicomdir_pcir_3patients_prior_current"


def import_set(s: Screen) -> list[str]:
    summary = media.import_media(s.ctx, DICOMDIR_SET, actor=Actor.system("test"))
    assert summary.counts()["imported"] == 31
    return summary.study_ids


def ct_study(s: Screen, study_ids: list[str]) -> str:
    row = s.db.execute(
        "SELECT id FROM studies WHERE modalities LIKE '%CT%' AND id IN ("
        + ", ".join("?" for _ in study_ids) + ") ORDER BY instance_count DESC",
        study_ids,
    ).fetchone()
    return str(row[0])


def draft(s: Screen, study_id: str) -> str:
    created = reports.create(
        s.db, s.ctx.store, ReportCreate(study_id=study_id), Actor.system("test"),
        facility="Test clinic",
    )
    return created.id


def test_worklist_lists_imported_studies_with_chips(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        import_set(s)
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("6 shown of 6")
        await s.see("Doe, Archibald")
        await s.see("receiving")  # no stability monitor runs here: still receiving
        s.user.find(marker="search").type("peter")
        await s.see("4 shown of 4")
        assert audit_actions(s.db, "study.list")

    run(tmp_path, body)


def test_viewer_shows_the_series_and_steps_through_slices(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        await s.sign_in(s.add_user(Role.VIEWER))
        await s.see("Worklist")
        await s.user.open(f"/viewer/{study_id}")
        await s.see("Slice 3 / 5")  # the middle slice of the 5-slice CT series
        s.user.find(marker="slice-next").click()
        await s.see("Slice 4 / 5")
        s.user.find("Soft tissue").click()
        await s.see("Window: Soft tissue")
        previews = audit_actions(s.db, "instance.preview")
        assert len(previews) >= 2 and all(r["outcome"] == "success" for r in previews)
        await s.user.should_not_see("Analyse")  # viewers read; they do not request analyses

    run(tmp_path, body)


def test_analysis_needs_an_indication_and_explains_a_missing_engine(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        await s.user.open(f"/analysis/{study_id}")
        await s.see(marker="no-engine")
        await s.see("No AI engine is available on this appliance.")

    run(tmp_path, body)


def test_analysis_form_refuses_an_empty_indication(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        await s.user.open(f"/analysis/{study_id}")
        await s.see(marker="run-analysis")
        s.user.find(marker="run-analysis").click()
        await s.see("Enter the clinical indication first.")
        assert audit_actions(s.db, "analysis.request") == []

    run(tmp_path, body, ai_engine="openai", ai_endpoint="http://127.0.0.1:9/v1")


def test_technician_sees_a_read_only_draft_and_hands_it_over(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        report_id = draft(s, study_id)
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        await s.user.open(f"/report/{study_id}")
        await s.see(marker="read-only")
        await s.user.should_not_see(marker="report-finalize")
        await s.user.should_not_see(marker="report-save")
        s.user.find(marker="hand-over").click()
        await s.see(marker="handed-over")
        assert reports.handed_over(s.db, report_id) is not None
        # The service refuses a technician's signature even when asked directly.
        tech = Actor(name="technician-1", role="technician")
        with pytest.raises(Forbidden):
            reports.finalize(s.db, report_id, FinalizeRequest(ai_findings_reviewed=True), tech)

    run(tmp_path, body)


def test_radiologist_edits_and_signs_only_after_confirming_the_review(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        report_id = draft(s, study_id)
        await s.sign_in(s.add_user(Role.RADIOLOGIST))
        await s.see("Worklist")
        await s.user.open(f"/report/{study_id}")
        await s.see(marker="report-finalize")
        await s.user.should_not_see(marker="hand-over")
        s.user.find(marker="section-impression").type("No acute finding.")
        s.user.find(marker="report-save").click()
        await s.see("Version 2")
        s.user.find(marker="report-finalize").click()
        s.user.find(marker="confirm-sign").click()
        await s.see("Confirm that you reviewed every AI finding before signing.")
        assert reports.load(s.db, report_id).status == "draft"
        s.user.find(marker="confirm-reviewed").click()
        s.user.find(marker="confirm-sign").click()
        await s.see("Signed by radiologist-1")
        stored = reports.load(s.db, report_id)
        assert stored.status == "final" and stored.content.impression == "No acute finding."

    run(tmp_path, body)


def test_admin_creates_and_disables_a_user(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.sign_in(s.add_user(Role.ADMIN))
        await s.see("Worklist")
        await s.user.open("/system")
        await s.see("Create user")
        s.user.find("Create user").click()
        await s.see("Username: 2 to 64 letters, digits, '.', '_' or '-'.")
        assert [u.username for u in auth.list_users(s.db)] == ["admin-1"]

    run(tmp_path, body)


def test_radiologist_accepts_and_rejects_findings_as_new_versions(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        report_id = draft(s, study_id)
        author = Actor(name="radiologist-1", role="radiologist")
        reports.update(s.db, report_id, ReportUpdate(findings=[
            FindingEdit(text="Small calcification."), FindingEdit(text="Old infarct.")
        ]), author)
        ids = [f.id for f in reports.load(s.db, report_id).content.findings]
        await s.sign_in(s.add_user(Role.RADIOLOGIST))
        await s.see("Worklist")
        await s.user.open(f"/report/{study_id}")
        await s.see("Version 2")
        s.user.find(marker=f"reject-{ids[0]}").click()
        await s.see("Version 3")
        s.user.find(marker=f"accept-{ids[1]}").click()
        await s.see("Version 4")
        stored = reports.load(s.db, report_id)
        assert [(f.text, f.review_state) for f in stored.content.findings] == [
            ("Old infarct.", "accepted")]
        decisions = [r["detail"] for r in audit_actions(s.db, "report.review")]
        assert len(decisions) == 2 and '"decision":"rejected"' in str(decisions[0])

    run(tmp_path, body)
