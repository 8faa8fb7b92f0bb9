"""Ending sessions before they expire: sign-out ends one bearer token, revoking ends every token
of an account (administrators for anyone, users for themselves), disabling an account ends them
too so that enabling it again revives none, and revoked rows are forgotten once the token would
have expired. Real app, real SQLite, real JWTs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from nicegui import ElementFilter
from nicegui.testing.user_interaction import UserInteraction

from appliance.audit.models import Actor
from appliance.auth import revocation
from appliance.auth.models import Role
from appliance.auth.service import set_active
from tests.conftest import PASSWORD
from tests.unit.test_ui_screens import Screen, run

Headers = dict[str, str]


def _sign_in(client: TestClient, username: str) -> Headers:
    response = client.post("/api/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _user_id(db: sqlite_utils.Database, username: str) -> str:
    (found,) = db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
    return str(found)


def _outcomes(db: sqlite_utils.Database, action: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT outcome FROM audit_log WHERE action = ? ORDER BY id", (action,))]


def test_sign_out_ends_only_that_token(
    client: TestClient, make_user: Callable[..., str], db: sqlite_utils.Database
) -> None:
    make_user("radiologist", "dr.a")
    phone, desk = _sign_in(client, "dr.a"), _sign_in(client, "dr.a")
    assert client.post("/api/auth/logout", headers=phone).status_code == 204
    refused = client.get("/api/auth/me", headers=phone)
    assert refused.status_code == 401
    assert "signed out or revoked" in refused.json()["detail"]
    assert client.get("/api/auth/me", headers=desk).status_code == 200
    assert client.post("/api/auth/logout", headers=phone).status_code == 401  # already ended
    assert client.post("/api/auth/logout").status_code == 401
    assert _outcomes(db, "auth.logout") == ["success"]


def test_revoked_rows_are_forgotten_after_their_expiry(
    client: TestClient, make_user: Callable[..., str], db: sqlite_utils.Database
) -> None:
    make_user("technician", "tech.a")
    user_id = _user_id(db, "tech.a")
    db.execute(
        "INSERT INTO revoked_tokens (jti, user_id, expires_at, revoked_at) VALUES (?, ?, ?, ?)",
        ("long-gone", user_id, int(time.time()) - 60, "2026-01-01T00:00:00Z"),
    )
    db.conn.commit()
    headers = _sign_in(client, "tech.a")
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    jtis = [r[0] for r in db.execute("SELECT jti FROM revoked_tokens")]
    token = headers["Authorization"].removeprefix("Bearer ")
    assert jtis == [jwt.decode(token, options={"verify_signature": False})["jti"]]


def test_an_admin_ends_every_session_of_an_account(
    client: TestClient, make_user: Callable[..., str], db: sqlite_utils.Database
) -> None:
    make_user("admin", "boss")
    make_user("radiologist", "dr.b")
    make_user("technician", "tech.b")
    boss, first, second = _sign_in(client, "boss"), _sign_in(client, "dr.b"), _sign_in(
        client, "dr.b")
    dr_b = _user_id(db, "dr.b")
    tech = _sign_in(client, "tech.b")
    assert client.post(f"/api/auth/users/{dr_b}/revoke-sessions", headers=tech).status_code == 403
    assert client.get("/api/auth/me", headers=first).status_code == 200
    assert client.post(f"/api/auth/users/{dr_b}/revoke-sessions", headers=boss).status_code == 204
    for ended in (first, second):
        assert client.get("/api/auth/me", headers=ended).status_code == 401
    assert client.get("/api/auth/me", headers=boss).status_code == 200
    assert client.post("/api/auth/users/nobody/revoke-sessions", headers=boss).status_code == 404
    time.sleep(1.1)  # revocation is to the second, as a token's iat: a new second, a new token
    assert client.get("/api/auth/me", headers=_sign_in(client, "dr.b")).status_code == 200
    assert _outcomes(db, "user.sessions_revoke") == ["refused", "success"]
    (detail,) = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'user.sessions_revoke'"
        " AND outcome = 'success'").fetchone()
    assert isinstance(json.loads(detail)["revoked_at"], int)


def test_a_user_ends_their_own_sessions(
    client: TestClient, make_user: Callable[..., str], db: sqlite_utils.Database
) -> None:
    make_user("viewer", "v.c")
    headers = _sign_in(client, "v.c")
    me = _user_id(db, "v.c")
    assert client.post(f"/api/auth/users/{me}/revoke-sessions", headers=headers).status_code == 204
    assert client.get("/api/auth/me", headers=headers).status_code == 401


def test_enabling_a_disabled_account_revives_no_old_token(
    client: TestClient, make_user: Callable[..., str], db: sqlite_utils.Database
) -> None:
    make_user("radiologist", "dr.d")
    headers = _sign_in(client, "dr.d")
    user_id = _user_id(db, "dr.d")
    admin = Actor(name="boss", role="admin", user_id="someone-else")
    set_active(db, user_id, False, admin)
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    set_active(db, user_id, True, admin)
    assert client.get("/api/auth/me", headers=headers).status_code == 401


def test_a_token_without_its_id_is_refused(
    app: FastAPI, client: TestClient, make_user: Callable[..., str]
) -> None:
    make_user("radiologist", "dr.e")
    token = _sign_in(client, "dr.e")["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    del claims["jti"]
    forged = jwt.encode(claims, app.state.jwt_key, algorithm="HS256")
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_ending_sessions_signs_the_screen_out(tmp_path: Path) -> None:
    """An administrator ends a technician's sessions from the System screen's button; the
    technician's screen session (here the same simulated browser, signed in again as the
    technician) is refused at the next page."""

    async def body(s: Screen) -> None:
        admin = s.add_user(Role.ADMIN)
        tech = s.add_user(Role.TECHNICIAN)
        await s.sign_in(tech)
        await s.see("Worklist")
        tech_id = _user_id(s.db, tech)
        revocation.revoke_sessions(s.db, tech_id, Actor(name=admin, role="admin", user_id="x"))
        await s.user.open("/")
        await s.see(marker="sign-in")
        time.sleep(1.1)  # revocation is to the second: a session started later is a new one
        await s.sign_in(admin)
        await s.see("Worklist")
        await s.user.open("/system")
        await s.see(marker="end-sessions")
        with s.user:
            (row,) = [r for r in s.user.find(marker="user-row").elements
                      if any(getattr(c, "text", None) == tech for c in r.descendants())]
            (button,) = ElementFilter(marker="end-sessions").within(instance=row)
        UserInteraction(s.user, {button}, None).click()
        await s.see(f"Every session of {tech} was ended.")
        assert _outcomes(s.db, "user.sessions_revoke") == ["success", "success"]
        await s.see("System")  # the admin's own session goes on

    run(tmp_path, body)
