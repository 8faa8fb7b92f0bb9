"""Security on the screens (simulated NiceGUI user): the System screen's certificate
fingerprint and Unlock, the plain-HTTP banner, idle and absolute session limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance import tls
from appliance.auth.models import Role
from tests.unit.test_ui_screens import Screen, audit_actions, run


def test_admin_unlocks_a_locked_account_on_the_system_screen(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        tech = s.add_user(Role.TECHNICIAN, "tech-locked")
        admin = s.add_user(Role.ADMIN)
        await s.sign_in(tech, "not the password")
        await s.see("One attempt left")
        await s.sign_in(tech, "not the password")
        await s.see("sign-in is locked here")
        await s.sign_in(tech)
        await s.see("sign-in is locked here")
        assert len(audit_actions(s.db, "auth.lockout")) == 1
        await s.sign_in(admin)  # the same (simulated) address: another account is not locked
        await s.see("System")
        await s.user.open("/system")
        await s.see(marker="tls-fingerprint")
        fingerprint = tls.fingerprint_sha256(tls.box_paths(s.settings)[0])
        await s.see(f"Certificate SHA-256 fingerprint (to pin): {fingerprint}")
        await s.see("tech-locked: locked from")
        s.user.find("Unlock").click()
        await s.see("tech-locked is unlocked.")
        assert audit_actions(s.db, "user.unlock")[-1]["actor"] == admin
        s.user.find("Sign out").click()
        await s.sign_in(tech)
        await s.see("Worklist")

    tls.write_box_certificate(_settings_for(tmp_path))
    run(tmp_path, body, login_max_failures=2)


def _settings_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    from appliance.config import Settings

    return Settings(data_dir=tmp_path / "data")


def test_red_banner_while_plain_http_is_served_on_the_network(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.user.open("/login")
        await s.see(marker="plaintext-banner")
        await s.see("Not encrypted")

    run(tmp_path, body, http_host="0.0.0.0", allow_plaintext_http=True)


def test_no_banner_on_loopback(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.user.open("/login")
        await s.see(marker="sign-in")
        await s.user.should_not_see(marker="plaintext-banner")

    run(tmp_path, body)


def test_idle_session_ends(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        await asyncio.sleep(1.5)  # idle limit 0.02 min = 1.2 s
        await s.user.open("/")
        await s.see(marker="sign-in")
        await s.see("Your session has expired")

    run(tmp_path, body, session_idle_minutes=0.02)


def test_absolute_session_limit_ends_an_active_session(tmp_path: Path) -> None:
    async def body(s: Screen) -> None:
        await s.sign_in(s.add_user(Role.TECHNICIAN))
        await s.see("Worklist")
        # Active all along (a page every 0.3 s slides the 30-minute idle limit), yet the
        # 2-second absolute limit ends the session.
        for _ in range(40):
            await asyncio.sleep(0.3)
            await s.user.open("/")
            try:
                await s.user.should_see(marker="sign-in", retries=1)
            except AssertionError:
                continue
            break
        await s.see("Your session has expired")

    run(tmp_path, body, session_max_hours=2 / 3600)
