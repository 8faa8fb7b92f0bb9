"""Sign-in throttling (appliance/auth/throttle.py) through the API: locks per (account,
address), the per-address slow-down and block, the last-attempt warning, and unlocking."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.config import Settings
from tests.conftest import PASSWORD
from tests.servers import RADIANT, clean_env


@pytest.fixture
def from_address(app: FastAPI) -> Iterator[Callable[[str], TestClient]]:
    clients: list[TestClient] = []

    def make(address: str) -> TestClient:
        client = TestClient(app, raise_server_exceptions=False, client=(address, 50000))
        if not clients:  # one app, started once (its services are built once: bootstrap.py)
            client.__enter__()
            clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _token(client: TestClient, username: str, password: str) -> httpx.Response:
    return client.post("/api/auth/token", data={"username": username, "password": password})


def test_lock_from_address_a_does_not_stop_address_b(
    from_address: Callable[[str], TestClient],
    make_user: Callable[..., str],
    db: sqlite_utils.Database,
) -> None:
    make_user("admin", "chief")
    a, b = from_address("192.0.2.10"), from_address("192.0.2.20")
    answers = [_token(a, "chief", "wrong guess") for _ in range(5)]
    assert [r.status_code for r in answers] == [401] * 5
    # The warning before the last attempt: after the 4th failure one attempt is left.
    assert answers[3].json().get("attempts_left") == 1
    assert "attempts_left" not in answers[2].json()
    assert _token(a, "chief", PASSWORD).status_code == 429  # locked from A
    assert _token(b, "chief", PASSWORD).status_code == 200  # B signs in
    rows = db.execute(
        "SELECT action, outcome, client, detail FROM audit_log WHERE action LIKE 'auth.%'"
        " ORDER BY id"
    ).fetchall()
    assert [r[2] for r in rows if r[0] == "auth.lockout"] == ["192.0.2.10"]
    assert rows[-1][:3] == ("auth.login", "success", "192.0.2.20")
    assert '"reason":"locked"' in rows[-2][3] and rows[-2][2] == "192.0.2.10"


def test_many_account_names_from_one_address_are_slowed_then_refused(
    from_address: Callable[[str], TestClient],
    make_user: Callable[..., str],
    settings: Settings,
    db: sqlite_utils.Database,
) -> None:
    make_user("radiologist", "reader")
    guesser, other = from_address("198.51.100.7"), from_address("198.51.100.8")
    limit = settings.login_client_delay_after
    codes = [_token(guesser, f"name{i}", "x-guess-x").status_code for i in range(limit + 1)]
    assert codes == [401] * (limit + 1)
    # Past the free attempts the next try comes too soon: refused without a password check.
    too_fast = _token(guesser, "name-next", "x-guess-x")
    assert too_fast.status_code == 429 and int(too_fast.headers["retry-after"]) >= 1
    assert _token(guesser, "reader", PASSWORD).status_code == 429  # even a right password
    assert _token(other, "reader", PASSWORD).status_code == 200  # others are not affected
    # Drive it to the block: let each delay lapse by moving it into the past.
    for i in range(settings.login_client_max_failures):
        db.execute("UPDATE login_clients SET next_allowed_at = NULL")
        if _token(guesser, f"more{i}", "x-guess-x").status_code == 429:
            break
    blocked = db.execute(
        "SELECT blocked_until FROM login_clients WHERE client = '198.51.100.7'"
    ).fetchone()
    assert blocked[0] is not None
    db.execute("UPDATE login_clients SET next_allowed_at = NULL")
    refused = _token(guesser, "reader", PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 14 * 60
    assert (
        db.execute(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.throttle' AND object_id = ?",
            ("198.51.100.7",),
        ).fetchone()[0]
        == 1
    )


def test_radiant_user_unlock(
    from_address: Callable[[str], TestClient],
    make_user: Callable[..., str],
    settings: Settings,
    db: sqlite_utils.Database,
    tmp_path: Path,
) -> None:
    make_user("technician", "tech9")
    a = from_address("203.0.113.5")
    for _ in range(5):
        _token(a, "tech9", "wrong guess")
    assert _token(a, "tech9", PASSWORD).status_code == 429
    result = subprocess.run(
        [*RADIANT, "user", "unlock", "--username", "tech9", "--data-dir", str(settings.data_dir)],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "unlocked tech9: 1 locked address(es)" in result.stdout
    assert _token(a, "tech9", PASSWORD).status_code == 200
    row = db.execute(
        "SELECT actor, object_id FROM audit_log WHERE action = 'user.unlock'"
    ).fetchone()
    assert row[0].startswith("cli:")
    unknown = subprocess.run(
        [*RADIANT, "user", "unlock", "--username", "nobody", "--data-dir", str(settings.data_dir)],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unknown.returncode == 1 and "not found" in unknown.stderr
