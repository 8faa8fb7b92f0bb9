"""Going online is checked first and confirmed: with the hospital's bucket (moto_server) and an
online AI endpoint (the OpenAI-protocol test server) that answer, the check lists what will
start and the switch needs ``confirm: true`` (``--yes`` on the command line); a bucket or an
endpoint that does not answer is refused in words and the box stays offline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.audit.models import Actor
from appliance.config import Mode, Settings
from appliance.context import prepare
from appliance.errors import Conflict
from appliance.system.mode import effective_mode
from radiant.cli import main as radiant
from sync import golive
from tests.ai_server import AIServer
from tests.servers import free_port
from tests.sync_servers import Remote, moto_s3

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def ai() -> Iterator[AIServer]:
    with AIServer() as running:
        yield running


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    with moto_s3(tmp_path / "moto") as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, remote: Remote, ai: AIServer) -> Settings:
    return remote.settings(tmp_path / "data", ai_online_endpoint=ai.url)


def test_the_api_checks_lists_and_needs_a_confirmation(
    app: FastAPI, client: TestClient, as_role: Headers, settings: Settings
) -> None:
    admin = as_role("admin")
    check = client.get("/api/system/mode/online-check", headers=admin)
    assert check.status_code == 200, check.text
    body = check.json()
    assert body["ok"] is True and body["refusal"] is None, body
    assert [(s["code"], s["problem"]) for s in body["steps"]] == [
        ("replication", None),
        ("cloud_engine", None),
    ]
    assert "radiant-bucket" in body["steps"][0]["target"]
    unconfirmed = client.post("/api/system/mode", headers=admin, json={"mode": "online"})
    assert unconfirmed.status_code == 422
    assert "replication" in unconfirmed.json()["detail"]
    db = app.state.ctx.pool.get()
    assert effective_mode(db, settings) is Mode.OFFLINE
    confirmed = client.post(
        "/api/system/mode", headers=admin, json={"mode": "online", "confirm": True}
    )
    assert confirmed.json() == {"mode": "online", "previous": "offline"}
    assert effective_mode(db, settings) is Mode.ONLINE
    refused = client.get("/api/system/mode/online-check", headers=as_role("technician"))
    assert refused.status_code == 403


def test_a_remote_that_does_not_answer_is_refused_in_words(
    tmp_path: Path, remote: Remote, ai: AIServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = remote.settings(tmp_path / "data", ai_online_endpoint=dead)
    found = golive.readiness(settings, endpoint_timeout_s=3)
    assert not found.ok
    assert found.refusal().startswith("Cannot go online: the online AI endpoint at " + dead)
    remote.stop()  # the bucket goes away too
    found = golive.readiness(remote.settings(tmp_path / "data", ai_online_endpoint=ai.url))
    assert [s.code for s in found.steps if s.problem] == ["replication"]
    ctx = prepare(settings)
    try:
        db = ctx.pool.get()
        with pytest.raises(Conflict, match="Cannot go online"):
            golive.go_online(db, settings, Actor.system("test"), confirmed=True,
                             checked=found)  # fmt: skip
        assert effective_mode(db, settings) is Mode.OFFLINE
    finally:
        ctx.pool.close_all()


def test_the_command_needs_yes_after_showing_what_starts(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "RADIANT_SYNC_REMOTE": "s3",
        "RADIANT_SYNC_BUCKET": settings.sync_bucket or "",
        "RADIANT_SYNC_ENDPOINT": settings.sync_endpoint or "",
        "RADIANT_SYNC_ACCESS_KEY": settings.sync_access_key.get_secret_value()
        if settings.sync_access_key
        else "",
        "RADIANT_SYNC_SECRET_KEY": settings.sync_secret_key.get_secret_value()
        if settings.sync_secret_key
        else "",
        "RADIANT_AI_ONLINE_ENDPOINT": settings.ai_online_endpoint or "",
    }.items():
        monkeypatch.setenv(key, value)
    data = ["--data-dir", str(settings.data_dir)]
    assert radiant(["mode", "online", *data]) == 1
    captured = capsys.readouterr()
    assert "online starts replication to" in captured.out and "add --yes" in captured.err
    assert radiant(["mode", "online", "--yes", *data]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "mode: online (was offline)"
