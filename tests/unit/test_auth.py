"""Sign-in, tokens, lockout, registration and the `radiant user create` command."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.app import create_app
from appliance.audit.models import Actor
from appliance.auth.models import Role, UserCreate
from appliance.auth.service import create_user
from appliance.config import Settings
from appliance.db.connection import open_database
from radiant.cli import main as radiant
from tests.conftest import PASSWORD

PROBLEM = "application/problem+json"


def _token(client: TestClient, username: str, password: str) -> httpx.Response:
    return client.post("/api/auth/token", data={"username": username, "password": password})


def test_sign_in_and_me(client: TestClient, make_user: Callable[..., str]) -> None:
    make_user("radiologist", "dr.house")
    response = _token(client, "dr.house", PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 30 * 60
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == "dr.house" and me.json()["role"] == "radiologist"
    assert "password" not in me.text and "hash" not in me.text


def test_username_is_case_insensitive(client: TestClient, make_user: Callable[..., str]) -> None:
    make_user("viewer", "Nurse.Joy")
    assert _token(client, "nurse.joy", PASSWORD).status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    make_user("viewer", "someone")
    wrong = _token(client, "someone", "not the password")
    unknown = _token(client, "nobody-here", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"] == "incorrect username or password"


def test_lockout_after_five_failures(
    client: TestClient, make_user: Callable[..., str], db: sqlite_utils.Database
) -> None:
    make_user("technician", "tech1")
    for _ in range(4):
        assert _token(client, "tech1", "guess-guess").status_code == 401
    fifth = _token(client, "tech1", "guess-guess")
    assert fifth.status_code == 401
    locked = _token(client, "tech1", PASSWORD)  # even the right password is refused now
    assert locked.status_code == 429
    assert locked.headers["content-type"] == PROBLEM
    retry = int(locked.headers["retry-after"])
    assert 14 * 60 < retry <= 15 * 60
    actions = db.execute(
        "SELECT action, outcome, detail FROM audit_log WHERE action LIKE 'auth.%' ORDER BY id"
    ).fetchall()
    assert len([a for a in actions if a[0] == "auth.login" and a[1] == "failure"]) == 6
    assert any(a[0] == "auth.lockout" for a in actions)
    assert '"reason":"locked"' in actions[-1][2]
    # fifteen minutes later (the lock's end moved into the past) the right password works again
    past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    db.execute("UPDATE login_failures SET locked_until = ? WHERE username = 'tech1'", (past,))
    assert _token(client, "tech1", PASSWORD).status_code == 200
    left = db.execute("SELECT COUNT(*) FROM login_failures WHERE username = 'tech1'").fetchone()
    assert left[0] == 0


def test_success_resets_the_failure_count(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    make_user("technician", "tech2")
    for _ in range(4):
        _token(client, "tech2", "guess-guess")
    assert _token(client, "tech2", PASSWORD).status_code == 200
    for _ in range(4):
        assert _token(client, "tech2", "guess-guess").status_code == 401
    assert _token(client, "tech2", PASSWORD).status_code == 200


def test_disabled_account_cannot_sign_in_nor_use_its_token(
    client: TestClient,
    make_user: Callable[..., str],
    login: Callable[[str], dict[str, str]],
    db: sqlite_utils.Database,
) -> None:
    make_user("viewer", "leaver")
    headers = login("leaver")
    db.execute("UPDATE users SET active = 0 WHERE username = 'leaver'")
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    assert _token(client, "leaver", PASSWORD).status_code == 401


def test_role_change_invalidates_tokens(
    client: TestClient,
    make_user: Callable[..., str],
    login: Callable[[str], dict[str, str]],
    db: sqlite_utils.Database,
) -> None:
    make_user("admin", "boss")
    headers = login("boss")
    db.execute("UPDATE users SET role = 'viewer' WHERE username = 'boss'")
    response = client.get("/api/auth/me", headers=headers)
    assert response.status_code == 401 and "role changed" in response.json()["detail"]


@pytest.mark.parametrize(
    "kind",
    ["expired", "wrong-key", "box-secret", "session-key", "garbage", "no-sub", "wrong-alg"],
)
def test_bad_tokens_are_refused(
    kind: str,
    client: TestClient,
    app: FastAPI,
    make_user: Callable[..., str],
    db: sqlite_utils.Database,
) -> None:
    make_user("admin", "boss")
    user_id = db.execute("SELECT id FROM users WHERE username = 'boss'").fetchone()[0]
    now = datetime.now(UTC)
    claims = {
        "sub": user_id,
        "role": "admin",
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": "a-token-id",
    }
    secret = app.state.jwt_key
    token = {
        "expired": lambda: jwt.encode({**claims, "exp": now - timedelta(seconds=5)}, secret),
        "wrong-key": lambda: jwt.encode(claims, "another-secret-of-sufficient-length-000"),
        # Neither the box secret itself nor the screen's cookie key signs API tokens (HKDF).
        "box-secret": lambda: jwt.encode(claims, app.state.ctx.secret_key),
        "session-key": lambda: jwt.encode(claims, app.state.ctx.keys.session),
        "garbage": lambda: "not.a.token",
        "no-sub": lambda: jwt.encode({k: v for k, v in claims.items() if k != "sub"}, secret),
        "wrong-alg": lambda: jwt.encode(claims, None, algorithm="none"),
    }[kind]()
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    if kind == "expired":
        assert "expired" in response.json()["detail"]


def test_token_lifetime_follows_the_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", access_token_minutes=5)
    app = create_app(settings, with_ui=False, with_receiver=False)
    create_user(
        open_database(settings.db_path),
        UserCreate(username="short", password=PASSWORD, role=Role.VIEWER),
        Actor.system("test"),
    )
    with TestClient(app) as client:
        body = _token(client, "short", PASSWORD).json()
    assert body["expires_in"] == 300
    claims = jwt.decode(body["access_token"], app.state.jwt_key, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 300
    assert claims["role"] == "viewer" and claims["name"] == "short"


def test_register_is_admin_only_and_validated(
    client: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    body = {"username": "new.tech", "password": "a long enough one", "role": "technician"}
    assert (
        client.post("/api/auth/register", json=body, headers=as_role("radiologist")).status_code
        == 403
    )
    created = client.post("/api/auth/register", json=body, headers=as_role("admin"))
    assert created.status_code == 201 and created.json()["role"] == "technician"
    again = client.post("/api/auth/register", json=body, headers=as_role("admin"))
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    weak = client.post(
        "/api/auth/register",
        headers=as_role("admin"),
        json={**body, "username": "weak", "password": "short"},
    )
    assert weak.status_code == 422 and "at least 10" in weak.json()["detail"]
    assert "short" not in str(weak.json()["errors"])  # the submitted password is not echoed
    bad_role = client.post(
        "/api/auth/register",
        headers=as_role("admin"),
        json={**body, "username": "x.y", "role": "superuser"},
    )
    assert bad_role.status_code == 422
    bad_name = client.post(
        "/api/auth/register", headers=as_role("admin"), json={**body, "username": "../etc"}
    )
    assert bad_name.status_code == 422


def test_cli_user_create(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = str(settings.data_dir)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = radiant(
        [
            "user",
            "create",
            "--username",
            "first.admin",
            "--role",
            "admin",
            "--password-stdin",
            "--data-dir",
            data_dir,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "created admin first.admin" in capsys.readouterr().out

    with TestClient(create_app(settings, with_ui=False, with_receiver=False)) as client:
        assert _token(client, "first.admin", PASSWORD).status_code == 200

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        radiant(
            [
                "user",
                "create",
                "--username",
                "FIRST.ADMIN",
                "--role",
                "viewer",
                "--password-stdin",
                "--data-dir",
                data_dir,
            ]
        )
        == 1
    )
    assert "already taken" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert (
        radiant(
            [
                "user",
                "create",
                "--username",
                "u2",
                "--role",
                "viewer",
                "--password-stdin",
                "--data-dir",
                data_dir,
            ]
        )
        == 1
    )
    assert "password: must be at least 10" in capsys.readouterr().err

    assert (
        radiant(["user", "create", "--username", "u3", "--role", "viewer", "--data-dir", data_dir])
        == 2
    )
    assert "--password-stdin" in capsys.readouterr().err

    with pytest.raises(SystemExit) as usage:
        radiant(["user", "create", "--username", "u4", "--role", "wizard", "--password-stdin"])
    assert usage.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
