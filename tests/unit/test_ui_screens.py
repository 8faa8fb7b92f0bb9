"""The screens through NiceGUI's simulated ``User`` (no browser): sign-in and its errors, the
session, which actions each role sees and may take, form checks, the French catalog."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlite_utils
from nicegui import app as nicegui_app
from nicegui import events, ui
from nicegui.elements.mixins.validation_element import ValidationElement
from nicegui.elements.upload_files import SmallFileUpload
from nicegui.storage import Storage
from nicegui.testing import User
from nicegui.testing.user_simulation import user_simulation
from pydantic import SecretStr

from ai.parsing import parse_answer
from ai.safety import apply_safety
from appliance import bootstrap
from appliance.analysis.verdict import finding_flags, verdict
from appliance.audit.models import Actor
from appliance.auth import service as auth
from appliance.auth.models import Role, UserCreate
from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.dicom import media
from appliance.errors import Forbidden
from appliance.reports import service as reports
from appliance.reports.models import FinalizeRequest, FindingEdit, ReportCreate, ReportUpdate
from provisioning import signing
from provisioning.fleet import enroll_bundle
from tests.ai_server import AIServer
from tests.dicom_files import instance_files
from tests.reporting import CT_SET, settle
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
async def screen(
    tmp_path: Path, *, provisioned: bool = True, **overrides: object
) -> AsyncIterator[Screen]:
    settings = Settings(data_dir=tmp_path / "data", **overrides)
    Storage.path = (tmp_path / "screen-storage").resolve()
    nicegui_app.storage = Storage()
    ctx = prepare(settings)
    # The services the composition root builds for the app, not started (no worker claims
    # jobs): the screens queue work the one way the API does, through the job runner.
    services = bootstrap.build_services(ctx)
    real_unprovisioned = runtime.unprovisioned
    if provisioned:
        runtime.unprovisioned = lambda: False  # type: ignore[assignment]  # first boot is done
    async with user_simulation() as user:
        runtime.install(runtime.Runtime(services))
        mount.register_pages(settings, ctx)
        try:
            yield Screen(user, ctx, settings)
        finally:
            # No ctx.pool.close_all() here: a page timer's off-loop read (e.g. the worklist's
            # live refresh) may still be running on a worker thread, and closing its SQLite
            # connection under it crashes the interpreter. The connections go with ``ctx``.
            runtime.unprovisioned = real_unprovisioned


def run(
    tmp_path: Path,
    body: Callable[[Screen], Awaitable[None]],
    *,
    provisioned: bool = True,
    **overrides: object,
) -> None:
    async def main() -> None:
        async with screen(tmp_path, provisioned=provisioned, **overrides) as found:
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
        await s.sign_in(name, "not the password")
        await s.see("One attempt left")  # the warning before the last attempt
        await s.sign_in(name, "not the password")
        await s.see("sign-in is locked here")
        await s.sign_in(name)  # the right password, but the account is locked from here now
        await s.see(marker="signin-message")
        await s.see("sign-in is locked here")
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
        # Nothing configured to go online to: refused in words, the box stays offline.
        s.user.find(marker="switch-mode").click()
        await s.see(marker="online-refused")
        await s.see("Nothing to go online to: neither the hospital's bucket nor an online AI"
                    " endpoint is configured. Ask the hospital's IT to set them at provisioning.")
        assert audit_actions(s.db, "system.mode") == []

    run(tmp_path, body)


def test_admin_confirms_what_going_online_starts(tmp_path: Path) -> None:
    with AIServer() as endpoint:

        async def body(s: Screen) -> None:
            await s.sign_in(s.add_user(Role.ADMIN))
            await s.see("System")
            await s.user.open("/system")
            await s.see(marker="switch-mode")
            s.user.find(marker="switch-mode").click()
            await s.see("Going online will start:")
            await s.see(f"• The online AI engine at {endpoint.url} (studies are de-identified"
                        " before they leave)")
            assert audit_actions(s.db, "system.mode") == []  # nothing before the confirmation
            s.user.find(marker="confirm-online").click()
            await s.see("Mode: online")
            detail = audit_actions(s.db, "system.mode")[-1]["detail"]
            assert detail == '{"from":"offline","to":"online"}'

        run(tmp_path, body, ai_online_endpoint=endpoint.url)


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


def import_set(s: Screen, *, complete: bool = True) -> list[str]:
    """Import the DICOMDIR set; ``complete``: the studies count as complete (stable), as
    they would once the stability period passed."""
    summary = media.import_media(s.ctx, DICOMDIR_SET, actor=Actor.system("test"))
    assert summary.counts()["imported"] == 31
    if complete:
        settle(s.db)
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
        import_set(s, complete=False)
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
        # One row for the series opened, none per slice (tests/unit/test_ui_viewer_audit.py).
        assert len(audit_actions(s.db, "series.view")) == 1
        assert audit_actions(s.db, "instance.preview") == []
        await s.user.should_not_see("Analyse")  # viewers read; they do not request analyses

    run(tmp_path, body)


def test_the_viewer_follows_a_study_that_is_still_arriving(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        files = instance_files(CT_SET)
        for path in files[:10]:
            s.ctx.ingestor.ingest(path.read_bytes(), source="test", actor=Actor.system("test"))
        (study_id,) = s.db.execute("SELECT id FROM studies").fetchone()
        await s.sign_in(s.add_user(Role.VIEWER))
        await s.see("Worklist")
        await s.user.open(f"/viewer/{study_id}")
        await s.see("Slice 6 / 10")
        for path in files[10:]:  # the rest arrives while the viewer is open
            s.ctx.ingestor.ingest(path.read_bytes(), source="test", actor=Actor.system("test"))
        await s.see(f"Slice 6 / {len(files)}")  # same image, more slices, no reload

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


def test_analysis_from_the_screen_is_queued_through_the_job_runner(tmp_path: Path) -> None:
    """The screen queues work the one way the API does (the job runner): one ``analysis``
    job row, queued for the worker, naming the analysis; the request is audited."""

    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        await s.user.open(f"/analysis/{study_id}")
        await s.see(marker="run-analysis")
        s.user.find(marker="indication").type("Headache after a fall")
        s.user.find(marker="run-analysis").click()
        for _ in range(100):
            queued = s.db.execute(
                "SELECT payload, status FROM jobs WHERE kind = 'analysis'").fetchall()
            if queued:
                break
            await asyncio.sleep(0.1)
        assert len(queued) == 1
        payload, status = json.loads(queued[0][0]), queued[0][1]
        assert status == "queued"  # no worker runs in this test: the row waits for one
        (analysis,) = s.db.execute(
            "SELECT id, status FROM analyses WHERE study_id = ?", (study_id,)).fetchall()
        assert payload["analysis_id"] == analysis[0]
        assert analysis[1] == "queued"
        assert len(audit_actions(s.db, "analysis.request")) == 1

    run(tmp_path, body, ai_engine="openai", ai_endpoint="http://127.0.0.1:9/v1")


def test_analysis_waits_for_a_study_that_is_still_arriving(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s, complete=False))
        (count,) = s.db.execute(
            "SELECT COUNT(*) FROM instances i JOIN series r ON r.id = i.series_id"
            " WHERE r.study_id = ?", (study_id,)).fetchone()
        await s.sign_in(s.add_user(Role.RADIOLOGIST))
        await s.see("Worklist")
        await s.user.open(f"/analysis/{study_id}")
        await s.see(marker="arrival")
        await s.see(f"The study is still arriving: {count} images so far.")
        (run_button,) = s.user.find(marker="run-analysis").elements
        assert not run_button.enabled
        await s.see(marker="run-partial")  # a radiologist may analyse what has arrived
        settle(s.db)  # the quiet period passed: the screen follows without a reload
        for _ in range(100):
            if run_button.enabled:
                break
            await asyncio.sleep(0.1)
        assert run_button.enabled
        await s.user.should_not_see(marker="arrival")
        await s.user.should_not_see(marker="run-partial")

    run(tmp_path, body, ai_engine="openai", ai_endpoint="http://127.0.0.1:9/v1")


def test_a_failed_analysis_says_what_to_do_without_technical_words(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        s.db.table("analyses").insert({
            "id": "failed-1", "study_id": study_id, "analysis_type": "primary",
            "status": "failed", "stage": "inferring", "created_at": "2026-01-01T00:00:00Z",
            "completed_at": "2026-01-01T00:00:05Z",
            "error": "EngineUnreachable: POST http://10.0.0.7:8080/v1/chat/completions refused",
        })
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        await s.user.open(f"/analysis/{study_id}")
        await s.see(marker="analysis-failure")
        await s.see("The AI engine cannot be reached. Check the network or switch to the local"
                    " engine (System screen), then run the analysis again.")
        await s.user.should_not_see("EngineUnreachable")
        await s.user.should_not_see("10.0.0.7")
        progress = next(iter(s.user.find(ui.linear_progress).elements))
        assert progress.value != 1  # never a full bar for a failure

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
        await s.see(marker="verified-banner")
        await s.see("AI suggestions were reviewed.")
        await s.see("Verified: radiologist-1 reviewed these AI suggestions and signed the report.")
        await s.user.should_not_see("AI decision support only")
        await s.user.should_not_see("Preliminary and UNVERIFIED")

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


# ---- first boot -----------------------------------------------------------------------------


def first_boot_state(s: Screen) -> dict[str, object]:
    """What provisioning writes: the marker, the settings file, users, the audit row."""
    data = s.settings.data_dir
    return {
        "marker": (data / "provisioned.json").is_file(),
        "env": (data / "provisioned.env").is_file(),
        "users": [u.username for u in auth.list_users(s.db)],
        "audited": len(audit_actions(s.db, "device.provision")),
    }


NOTHING_WRITTEN = {"marker": False, "env": False, "users": [], "audited": 0}


def field_error(s: Screen, marker: str) -> str | None:
    """The error shown under the form field marked ``marker``."""
    element = s.user.find(marker=marker).elements.pop()
    assert isinstance(element, ValidationElement)
    return element.error


async def fill_first_boot(s: Screen, **values: str) -> None:
    for name, value in values.items():
        element = s.user.find(marker=f"fb-{name}")
        element.clear()
        element.type(value)


def test_an_unprovisioned_box_shows_the_first_boot_form(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        for path in ("/", "/login", "/import"):
            await s.user.open(path)
            await s.see(marker="first-boot")
            await s.see("Set up this RadiantAI box")
            await s.see(marker="fb-bundle-upload")
            await s.user.should_not_see(marker="sign-in")
        s.user.find("Français").click()
        await s.see("Configurer ce boîtier RadiantAI")
        await s.see("Titre AE DICOM")

    run(tmp_path, body, provisioned=False)


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"dicom_ae_title": "THIS TITLE IS FAR TOO LONG"}, "dicom_ae_title",
         "DICOM AE title: must be 1 to 16 characters"),
        ({"admin_password": "short"}, "admin_password",
         "Administrator password: must be at least 10 characters"),
        ({"dicom_port": "eleven"}, "dicom_port", "DICOM port: "),
    ],
)
def test_a_bad_first_boot_answer_names_the_field_and_writes_nothing(
    tmp_path: Path, values: dict[str, str], field: str, message: str
) -> None:
    async def body(s: Screen) -> None:
        await s.user.open("/first-boot")
        answers = {"site_name": "Clinic A", "admin_username": "chief",
                   "admin_password": PASSWORD, **values}
        await fill_first_boot(s, **answers)
        s.user.find(marker="fb-submit").click()
        await s.see(marker="fb-message")
        await s.see(message)
        error = field_error(s, f"fb-{field}")
        assert error is not None and error.startswith(message)
        others = [m for m in ("fb-site_name", "fb-admin_username", "fb-dicom_ae_title")
                  if m != f"fb-{field}"]
        assert all(field_error(s, m) is None for m in others)
        assert first_boot_state(s) == NOTHING_WRITTEN
        await s.user.should_not_see(marker="fb-provisioned")

    run(tmp_path, body, provisioned=False)


def test_a_tampered_bundle_file_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    remote = Settings(data_dir=tmp_path / "x", sync_remote="s3", sync_bucket="radiant-bucket",
                      sync_endpoint="http://127.0.0.1:9", sync_access_key=SecretStr("k"),
                      sync_secret_key=SecretStr("s"))
    bundle = enroll_bundle(signing.generate(), "clinic-a", remote, {"site_name": "Clinic A"})
    bundle["remote"]["endpoint"] = "http://attacker.example:9000"  # signature no longer holds
    data = json.dumps(bundle).encode("utf-8")

    async def body(s: Screen) -> None:
        await s.user.open("/first-boot")
        await fill_first_boot(s, admin_username="chief", admin_password=PASSWORD)
        upload = s.user.find(kind=ui.upload).elements.pop()
        assert isinstance(upload, ui.upload)
        await upload.handle_uploads([SmallFileUpload("bundle.json", "application/json", data)])
        await s.see("Bundle file loaded: bundle.json")
        s.user.find(marker="fb-submit").click()
        await s.see("Enrollment bundle (JSON): ")
        error = field_error(s, "fb-bundle")
        assert error is not None and "signature" in error
        assert first_boot_state(s) == NOTHING_WRITTEN

    run(tmp_path, body, provisioned=False)


def test_good_first_boot_answers_provision_the_box_then_offer_sign_in(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.user.open("/first-boot")
        await fill_first_boot(s, site_name="Clinic A", admin_username="chief",
                              admin_password=PASSWORD, dicom_ae_title="CLINICA")
        s.user.find(marker="fb-submit").click()
        await s.see(marker="fb-provisioned")
        await s.see("Administrator chief was created.")
        await s.see("Restart the appliance to apply the settings")
        await s.user.should_not_see(marker="fb-submit")
        state = first_boot_state(s)
        assert state == {"marker": True, "env": True, "users": ["chief"], "audited": 1}
        assert [u.role for u in auth.list_users(s.db)] == [Role.ADMIN]
        row = audit_actions(s.db, "device.provision")[0]
        assert row["outcome"] == "success" and row["actor"] == "screen:first-boot"
        env = (s.settings.data_dir / "provisioned.env").read_text("utf-8")
        assert "RADIANT_DICOM_AE_TITLE" in env and "CLINICA" in env
        assert PASSWORD not in env
        s.user.find(marker="fb-to-sign-in").click()
        await s.see(marker="sign-in")
        await s.sign_in("chief")
        await s.see("System")  # the administrator's navigation
        await s.user.open("/first-boot")  # provisioned: the screen is gone
        await s.see("Worklist")
        await s.user.should_not_see(marker="first-boot")

    run(tmp_path, body, provisioned=False)


def test_first_boot_refuses_a_client_on_the_network(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        transport = s.user.http_client._transport
        assert isinstance(transport, httpx.ASGITransport)
        transport.client = ("192.0.2.40", 50123)  # a computer on the clinic's network
        await s.user.open("/first-boot")
        await s.see(marker="first-boot-refused")
        await s.see("Set it up from its own screen.")
        await s.user.should_not_see(marker="fb-submit")
        await s.user.should_not_see(marker="fb-bundle-upload")
        assert first_boot_state(s) == NOTHING_WRITTEN

    run(tmp_path, body, provisioned=False)


# ---- the screen's PDF route -----------------------------------------------------------------


def pdf_exports(s: Screen) -> list[tuple[object, object, object, object]]:
    return [(r["actor"], r["role"], r["object_id"], r["outcome"])
            for r in audit_actions(s.db, "export.pdf")]


def test_screen_pdf_without_a_session_is_refused(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        report_id = draft(s, ct_study(s, import_set(s)))
        await s.user.open("/login")  # a browser session, nobody signed in
        response = await s.user.http_client.get(f"/screen/report/{report_id}/pdf")
        assert response.status_code == 401
        assert not response.content.startswith(b"%PDF")
        assert "application/pdf" not in response.headers.get("content-type", "")
        assert pdf_exports(s) == []

    run(tmp_path, body)


def test_screen_pdf_roles_match_the_api_export_rule() -> None:
    from appliance.export import routes as export_routes

    assert mount.report.PDF_ROLES == export_routes.Readers.roles == frozenset(Role)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.TECHNICIAN, Role.RADIOLOGIST])
def test_screen_pdf_follows_the_api_rule_and_is_audited(tmp_path: Path, role: Role) -> None:
    async def body(s: Screen) -> None:
        report_id = draft(s, ct_study(s, import_set(s)))
        name = s.add_user(role)
        await s.sign_in(name)
        await s.see("Worklist")
        response = await s.user.http_client.get(f"/screen/report/{report_id}/pdf")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"].startswith("inline;")
        assert response.content.startswith(b"%PDF")
        assert pdf_exports(s) == [(name, role.value, report_id, "success")]
        missing = await s.user.http_client.get("/screen/report/no-such-report/pdf")
        assert missing.status_code == 404 and not missing.content.startswith(b"%PDF")
        assert pdf_exports(s)[-1] == (name, role.value, "no-such-report", "not_found")

    run(tmp_path, body)


def test_screen_pdf_refuses_a_role_the_export_rule_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page module the screens were mounted with (NiceGUI's simulation re-imports pages).
    monkeypatch.setattr(mount.report, "PDF_ROLES", frozenset({Role.RADIOLOGIST}))

    async def body(s: Screen) -> None:
        report_id = draft(s, ct_study(s, import_set(s)))
        await s.sign_in(s.add_user(Role.VIEWER))
        await s.see("Worklist")
        response = await s.user.http_client.get(f"/screen/report/{report_id}/pdf")
        assert response.status_code == 403
        assert not response.content.startswith(b"%PDF")
        assert pdf_exports(s) == []

    run(tmp_path, body)


def test_screen_pdf_after_the_session_expired_is_refused(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        report_id = draft(s, ct_study(s, import_set(s)))
        await s.sign_in(s.add_user(Role.RADIOLOGIST))
        await s.see("Worklist")
        s.user.find("Sign out").click()
        await s.see(marker="sign-in")
        response = await s.user.http_client.get(f"/screen/report/{report_id}/pdf")
        assert response.status_code == 401 and not response.content.startswith(b"%PDF")
        assert pdf_exports(s) == []

    run(tmp_path, body)


# ---- viewer: window/level by drag -----------------------------------------------------------


def drag_window(s: Screen, args: object) -> None:
    """What the browser sends (throttled) while a finger drags in window mode."""
    assert s.user.client is not None
    layout = s.user.client.layout
    with s.user.client:
        for listener in layout._event_listeners.values():
            if listener.type == "radiant_window":
                events.handle_event(
                    listener.handler,
                    events.GenericEventArguments(sender=layout, client=s.user.client, args=args),
                )


def test_dragging_the_window_re_renders_on_the_server_and_shows_c_w(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        await s.sign_in(s.add_user(Role.VIEWER))
        await s.see("Worklist")
        await s.user.open(f"/viewer/{study_id}")
        await s.see("Slice 3 / 5")
        s.user.find("Soft tissue").click()
        await s.see("C 40 / W 400")  # the preset's window, in the overlay
        await s.see("Window: Soft tissue")
        drag_window(s, {"center": 123.4, "width": 987.0})
        await s.see("C 123.4 / W 987")
        await s.see("Window: dragged")
        for bad in ({"center": 10, "width": 0}, {"center": "x", "width": 5}, {"width": 5}, 7):
            drag_window(s, bad)  # ignored: no render, the numbers stay
        await s.see("C 123.4 / W 987")
        # Re-renders are not audited one by one: the series opened is, once.
        assert audit_actions(s.db, "instance.preview") == []
        assert len(audit_actions(s.db, "series.view")) == 1
        s.user.find("Lung").click()  # a preset ends the dragged window
        await s.see("C -600 / W 1500")
        await s.user.should_not_see("Window: dragged")

    run(tmp_path, body)


# ---- import: web upload of zip archives -----------------------------------------------------


def test_a_zip_uploaded_on_the_import_screen_is_stored_with_a_summary(tmp_path: Path) -> None:
    import io
    import zipfile

    from tests.dicom_files import instance_files

    ct = instance_files("ct_ge_head_tilt18_varspacing")[:4]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in ct:
            archive.write(path, f"CT/{path.name}")
        archive.writestr("CT/dup.dcm", ct[0].read_bytes())  # the same instance again
        archive.writestr("../../outside.dcm", ct[1].read_bytes())  # zip slip
        archive.writestr("notes.txt", "not an image")
        broken = bytearray(ct[2].read_bytes())[:700]  # DICM preamble, cut-off data set
        archive.writestr("CT/broken.dcm", bytes(broken))
    data = out.getvalue()

    async def body(s: Screen) -> None:
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        await s.user.open("/import")
        await s.see("Choose or drop DICOM files or zip archives")
        upload = s.user.find(marker="upload").elements.pop()
        assert isinstance(upload, ui.upload)
        await upload.handle_uploads([SmallFileUpload("study.zip", "application/zip", data)])
        await s.see(marker="upload-counts")
        rows = audit_actions(s.db, "study.upload")
        assert len(rows) == 1
        stored = s.db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        assert stored == 4
        assert s.db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 1
        await s.see("Imported 4 · already present 1 · quarantined 1 · refused 2")
        await s.see("study.zip/CT/broken.dcm: quarantined (the data is truncated")
        await s.see("study.zip/../../outside.dcm: refused (entry path contains '..'")
        await s.see("study.zip/notes.txt: refused (not DICOM")
        assert not (s.settings.data_dir.parent / "outside.dcm").exists()
        assert not (tmp_path.parent / "outside.dcm").exists()
        await s.see(marker="upload-to-worklist")

    run(tmp_path, body)


# ---- the safety verdict on the screens --------------------------------------------------------

FLAGGED_ANSWER = (
    '```json\n{"findings": [{"location": "left temporal lobe", "description": "Glioblastoma.",'
    ' "impression": "Glioblastoma", "confidence": 1.7, "measurements": [{"name": "long axis",'
    ' "value": 3, "unit": "furlongs"}]}], "overall_impression": "It was called \\"glioma\\"."}'
    "\n```"
)


def store_flagged_analysis(s: Screen, study_id: str) -> str:
    """The rows the analysis job writes for FLAGGED_ANSWER: the real safety layer's output in
    the real storage format (appliance.analysis.verdict)."""
    safe = apply_safety(parse_answer(FLAGGED_ANSWER))
    analysis_id = "flagged-1"
    s.db.table("analyses").insert({
        "id": analysis_id, "study_id": study_id, "analysis_type": "primary",
        "status": "needs_review", "stage": "done", "engine": "openai",
        "overall_impression": safe.overall_impression, "disclaimer": safe.disclaimer,
        "safety": json.dumps(verdict(safe)), "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:09Z",
    })
    for number, finding in enumerate(safe.findings):
        s.db.table("findings").insert({
            "id": f"finding-{number}", "analysis_id": analysis_id,
            "location": finding.location, "description": finding.description,
            "impression": finding.impression, "confidence": finding.confidence.value,
            "flags": json.dumps(finding_flags(finding)), "review_state": "pending",
            "created_at": "2026-01-01T00:00:09Z",
        })
        for item in finding.measurements:
            s.db.table("measurements").insert({
                "id": f"m-{number}", "finding_id": f"finding-{number}", "name": item.name,
                "value": float(item.value), "unit": item.unit or "",
                "created_at": "2026-01-01T00:00:09Z",
            })
    return analysis_id


def test_every_safety_flag_is_shown_and_signing_waits_for_decisions(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        study_id = ct_study(s, import_set(s))
        analysis_id = store_flagged_analysis(s, study_id)
        await s.sign_in(s.add_user(Role.RADIOLOGIST))
        await s.see("Worklist")
        await s.user.open(f"/analysis/{study_id}")
        await s.see(marker="impression-flag")
        await s.see("Could not be hedged: names a disorder inside quoted words"
                    " (\u201cglioma\u201d). Decide before signing.")
        await s.see("Unit not recognised (\u201cfurlongs\u201d): the number is kept without"
                    " a unit.")
        await s.see("Confidence out of range (1.7), replaced by 0.02.")

        created = reports.create(
            s.db, s.ctx.store, ReportCreate(study_id=study_id, analysis_id=analysis_id),
            Actor(name="technician-1", role="technician"), facility="Test clinic")
        (finding,) = created.content.findings
        await s.user.open(f"/report/{study_id}")
        await s.see(marker="impression-pending")
        await s.see(marker=f"flag-{finding.id}")
        await s.see("Unit not recognised (\u201cfurlongs\u201d): the number is kept without"
                    " a unit.")
        await s.see(marker=f"pending-{finding.id}")
        await s.see("Flagged items awaiting your decision: 2.")
        s.user.find(marker="report-finalize").click()
        await s.see(marker="undecided-list")
        await s.see(f"Finding {finding.id} (left temporal lobe): a bare diagnosis reworded"
                    " by the safety layer, unit not recognised, confidence out of range")
        await s.see("The impression: a quoted diagnosis that could not be hedged")
        s.user.find(marker="confirm-reviewed").click()
        (sign,) = s.user.find(marker="confirm-sign").elements
        assert isinstance(sign, ui.button) and not sign.enabled  # Sign waits for decisions
        s.user.find(marker="confirm-sign").click()
        assert reports.load(s.db, created.id).status == "draft"

        s.user.find(marker="impression-accept").click()
        await s.see("Version 2")
        await s.see("Flagged items awaiting your decision: 1.")
        s.user.find(marker=f"reject-{finding.id}").click()
        await s.see("Version 3")
        await s.user.should_not_see(marker="undecided-count")
        await s.see(marker="rejected-finding")
        await s.see("Rejected by radiologist-1")
        await s.user.should_not_see("The version chain does not verify")
        s.user.find(marker="report-finalize").click()
        s.user.find(marker="confirm-reviewed").click()
        s.user.find(marker="confirm-sign").click()
        await s.see(marker="verified-banner")
        stored = reports.load(s.db, created.id)
        assert stored.status == "final" and stored.content.findings == []
        assert [g.finding.id for g in stored.content.rejected_findings] == [finding.id]
        # Signing on the screen also stored the verified findings SR in the study.
        published = s.db.execute(
            "SELECT se.description FROM series se JOIN instances i ON i.series_id = se.id"
            " WHERE i.source = 'report'").fetchall()
        assert [tuple(r) for r in published] == [("RadiantAI findings, VERIFIED",)]

    run(tmp_path, body)
