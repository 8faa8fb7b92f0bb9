"""Argon2 runs outside the database's write lock, once per sign-in, and parallel attempts
cannot outrun the lockout.

Argon2id costs about 0.2 s of CPU here by design. A sign-in used to check the password twice
(``verify``, then ``verify_and_update``) inside ``BEGIN IMMEDIATE``: every writer of the box
(C-STORE acknowledgements, audit rows) waited about 0.4 s per sign-in, and an unknown name
(checked against a dummy hash) held the lock as long, for anyone who can reach the sign-in
page."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from fastapi import FastAPI

from appliance.audit.models import Actor
from appliance.auth import service as auth_service
from appliance.auth.models import Role, UserCreate
from appliance.auth.throttle import LoginPolicy
from appliance.config import Settings
from appliance.db.connection import open_database
from appliance.errors import Locked, Unauthorized
from tests.conftest import PASSWORD, PRODUCTION_HASHER

ADDRESS = "192.0.2.7"


class Watching:
    """The real hasher; notes each call and whether the caller held a transaction."""

    def __init__(self, real: Any, db: sqlite_utils.Database) -> None:
        self.real = real
        self.db = db
        self.calls: list[tuple[str, bool]] = []
        self.lock = threading.Lock()
        self.during_check: Any = None

    def _note(self, name: str) -> None:
        with self.lock:
            self.calls.append((name, self.db.conn.in_transaction))
        if self.during_check is not None:
            self.during_check()

    def hash(self, password: str) -> str:
        self._note("hash")
        return str(self.real.hash(password))

    def verify(self, password: str, hashed: str) -> bool:
        self._note("verify")
        return bool(self.real.verify(password, hashed))

    def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        self._note("verify_and_update")
        valid, new = self.real.verify_and_update(password, hashed)
        return bool(valid), new


@pytest.fixture
def watching(db: sqlite_utils.Database, monkeypatch: pytest.MonkeyPatch, app: FastAPI) -> Watching:
    hasher = Watching(auth_service._hasher, db)
    monkeypatch.setattr(auth_service, "_hasher", hasher)
    return hasher


def _user(db: sqlite_utils.Database, name: str = "reader1") -> None:
    auth_service.create_user(
        db, UserCreate(username=name, password=PASSWORD, role=Role.RADIOLOGIST), Actor.system("t")
    )


def test_a_sign_in_checks_the_password_once_outside_any_transaction(
    db: sqlite_utils.Database, watching: Watching
) -> None:
    _user(db)
    assert watching.calls == [("hash", False)]
    watching.calls.clear()
    user = auth_service.authenticate(db, "reader1", PASSWORD, client=ADDRESS)
    assert user.username == "reader1"
    assert watching.calls == [("verify_and_update", False)]
    watching.calls.clear()
    with pytest.raises(Unauthorized):
        auth_service.authenticate(db, "reader1", "wrong horse battery", client=ADDRESS)
    with pytest.raises(Unauthorized):
        auth_service.authenticate(db, "nobody", PASSWORD, client=ADDRESS)
    assert watching.calls == [("verify_and_update", False), ("verify", False)]
    logins = "SELECT outcome FROM audit_log WHERE action = 'auth.login'"
    assert [r[0] for r in db.execute(logins)] == ["success", "failure", "failure"]


def test_a_password_changed_during_the_check_is_not_accepted(
    db: sqlite_utils.Database, watching: Watching, settings: Settings
) -> None:
    _user(db)
    other = open_database(settings.db_path)

    def change_it() -> None:
        other.execute(
            "UPDATE users SET password_hash = ? WHERE username = 'reader1'",
            (auth_service._hasher.real.hash("another horse battery"),),
        )
        other.conn.commit()

    watching.during_check = change_it
    with pytest.raises(Unauthorized):
        auth_service.authenticate(db, "reader1", PASSWORD, client=ADDRESS)
    other.conn.close()


def test_parallel_wrong_passwords_are_checked_no_more_than_the_lockout_allows(
    db: sqlite_utils.Database, watching: Watching, settings: Settings
) -> None:
    _user(db)
    policy = LoginPolicy(max_failures=3)
    watching.calls.clear()
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def attempt(path: Path) -> None:
        own = open_database(path)
        start.wait()
        try:
            auth_service.authenticate(
                own, "reader1", "wrong horse battery", client=ADDRESS, policy=policy
            )
        except Locked:
            outcomes.append("locked")
        except Unauthorized:
            outcomes.append("wrong")
        finally:
            own.conn.close()

    threads = [threading.Thread(target=attempt, args=(settings.db_path,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["locked"] * 5 + ["wrong"] * 3
    assert len(watching.calls) == 3  # three guesses checked, five refused unchecked
    with pytest.raises(Locked):  # the right password from this address waits out the lock
        auth_service.authenticate(db, "reader1", PASSWORD, client=ADDRESS, policy=policy)


def test_the_appliance_hashes_with_argon2id_at_owasp_cost_or_more() -> None:
    """The tests sign in with a cheap Argon2id (tests/conftest.py); the appliance keeps at least
    OWASP's minimum for Argon2id (19 MiB, 2 passes, 1 lane)."""
    _, kind, version, params, *_ = PRODUCTION_HASHER.hash("x").split("$")
    cost = dict(part.split("=") for part in params.split(","))
    assert (kind, version) == ("argon2id", "v=19")
    assert int(cost["m"]) >= 19 * 1024 and int(cost["t"]) >= 2 and int(cost["p"]) >= 1
    assert PRODUCTION_HASHER is not auth_service._hasher
