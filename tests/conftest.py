"""Fixtures shared by all tests: isolated settings, a real app on a real SQLite file, users."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from appliance.audit.models import Actor
from appliance.auth import service as auth_service
from appliance.auth.models import Role, UserCreate
from appliance.config import Settings
from appliance.db.connection import open_database

PASSWORD = "correct horse battery"
#: The appliance's own password hasher, as it runs outside the tests (checked by
#: tests/unit/test_auth_password_check.py).
PRODUCTION_HASHER = auth_service._hasher
#: Argon2id at its lowest cost (about 2 ms a check instead of about 0.2 s): in-process tests
#: create and sign in thousands of users. Appliances the tests start as processes keep the
#: production cost.
TEST_HASHER = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auth_service, "_hasher", TEST_HASHER)
        patch.setattr(auth_service, "_DUMMY_HASH", TEST_HASHER.hash("not a password"))
        yield


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RADIANT_* variable or .env file of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith("RADIANT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    from appliance.app import create_app

    return create_app(settings, with_ui=False, with_receiver=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def db(settings: Settings, app: FastAPI) -> Iterator[sqlite_utils.Database]:
    """A second, independent connection to the app's database file (as another process)."""
    database = open_database(settings.db_path)
    yield database
    database.conn.close()


@pytest.fixture
def make_user(db: sqlite_utils.Database) -> Callable[..., str]:
    def _make(role: Role | str, username: str | None = None) -> str:
        role = Role(role)
        name = username or f"{role.value}-user"
        auth_service.create_user(
            db, UserCreate(username=name, password=PASSWORD, role=role), Actor.system("test")
        )
        return name

    return _make


@pytest.fixture
def login(client: TestClient) -> Callable[[str], dict[str, str]]:
    def _login(username: str, password: str = PASSWORD) -> dict[str, str]:
        response = client.post("/api/auth/token", data={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return _login


@pytest.fixture
def as_role(
    make_user: Callable[..., str], login: Callable[[str], dict[str, str]]
) -> Callable[[Role | str], dict[str, str]]:
    """Authorization headers for a (created once) user of the given role."""
    cache: dict[str, dict[str, str]] = {}

    def _as(role: Role | str) -> dict[str, str]:
        key = Role(role).value
        if key not in cache:
            cache[key] = login(make_user(key))
        return cache[key]

    return _as
