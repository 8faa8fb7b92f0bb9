"""From an enrollment bundle to a steered box, through a real S3 server (moto) and Azurite:
provision from the bundle, the agent publishes its signed status, `radiant fleet list` shows
it, `radiant fleet set` changes it within a polling interval, tampered and replayed documents
are refused and reported, a second provision is refused."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from appliance import tls
from appliance.config import Mode, load_settings
from appliance.context import prepare
from appliance.db.connection import open_database
from provisioning import audit_checkpoints, signing
from provisioning.agent import FleetAgent
from provisioning.bucket import DESIRED_DOC, FleetBucket
from radiant.cli import main
from sync.mode import effective_mode
from tests.sync_servers import Remote, azurite, moto_s3, poll

pytestmark = pytest.mark.integration
PASSWORD = "a long first passphrase"
SERVERS: dict[str, Callable[[Path], AbstractContextManager[Remote]]] = {
    "s3": moto_s3,
    "azure": azurite,
}


@pytest.fixture(params=sorted(SERVERS))
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remote]:
    with SERVERS[request.param](tmp_path / "server") as server:
        yield server


def cli(capsys: pytest.CaptureFixture[str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(args))
    finally:
        sys.stdin = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fleet_rows(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    code, out, err = cli(capsys, "fleet", "list", "--json", "--stale-after", "60")
    assert code == 0, err
    # The agent's log lines (structlog, not configured in tests) share stdout: skip them.
    rows: list[dict[str, Any]] = json.loads(out[out.index("\n[") + 1 :] if "\n[" in out else out)
    return rows


def test_enroll_publish_steer_and_refuse(
    remote: Remote,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Hospital IT: the bucket's credentials in the environment, a fleet key, a bundle.
    secret = tmp_path / "secret"
    for name, value in remote.env().items():
        if name.endswith(("SECRET_KEY", "AZURE_KEY")):
            secret.write_text(value)
        monkeypatch.setenv(name, value)
    key = tmp_path / "it" / "fleet_key.pem"
    key.parent.mkdir()
    code, out, err = cli(capsys, "fleet", "keygen", "--out", str(key))
    assert code == 0, err
    fingerprint = out.split("fingerprint: ")[1].strip()
    bundle = tmp_path / "it" / "clinic-a.json"
    code, _, err = cli(
        capsys, "fleet", "enroll-bundle", "--key", str(key), "--device-name", "clinic-a",
        "--site-name", "Clinic A", "--timezone", "Africa/Abidjan", "--ae-title", "CLINIC_A",
        "--out", str(bundle),
    )
    assert code == 0, err
    assert fleet_rows(capsys) == []

    # The box: only its own data dir and the bundle (no RADIANT_SYNC_* of its own).
    for name in remote.env():
        monkeypatch.delenv(name)
    data = tmp_path / "box"
    code, out, err = cli(
        capsys, "provision", "--data-dir", str(data), "--bundle", str(bundle),
        "--fleet-key-fingerprint", fingerprint, "--admin-username", "chief",
        "--admin-password-stdin", stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    assert "registered in the bucket" in out
    monkeypatch.setenv("RADIANT_FLEET_INTERVAL_S", "0.3")
    settings = load_settings(data_dir=data)
    assert settings.sync_remote == remote.kind and settings.dicom_ae_title == "CLINIC_A"
    device_id = (data / "device_id").read_text().strip()

    ctx = prepare(settings)
    agent = FleetAgent(ctx)
    for name, value in remote.env().items():  # IT again, for the fleet commands below
        monkeypatch.setenv(name, value)
    try:
        agent.start()
        rows = poll(
            "the box's status in `radiant fleet list`",
            lambda: [r for r in fleet_rows(capsys) if r["device_id"] == device_id and r["mode"]],
        )
        assert rows[0]["name"] == "clinic-a" and rows[0]["mode"] == "online"
        assert rows[0]["problems"] == [] and not rows[0]["stale"]

        # A setting applied live (and kept for the next start).
        code, _, err = cli(
            capsys, "fleet", "set", "clinic-a", "retention_days=30", "--key", str(key)
        )
        assert code == 0, err
        poll("retention applied", lambda: ctx.settings.retention_days == 30)
        assert "RADIANT_RETENTION_DAYS='30'" in (data / "fleet.env").read_text()
        fleet = FleetBucket(load_settings(data_dir=tmp_path / "it-work"), tmp_path / "rc").prepare()
        first = fleet.get_json(device_id, DESIRED_DOC)
        assert first is not None and first["serial"] == 1

        # Tampered: the value changed after signing.
        tampered = {**first, "serial": 2, "settings": {"retention_days": 1}}
        fleet.put_json(device_id, DESIRED_DOC, tampered)
        state = poll("the tampered document reported", lambda: rejected(agent, "bad signature"))
        assert ctx.settings.retention_days == 30
        assert state["serial"] == 2

        # Replayed: the old, validly signed serial 1 put back after serial 2 was applied.
        code, _, err = cli(capsys, "fleet", "set", device_id, "ai_auto=true", "--key", str(key))
        assert code == 0, err
        poll("serial 3 applied", lambda: agent.report.applied_serial == 3)
        fleet.put_json(device_id, DESIRED_DOC, first)
        poll("the replay reported", lambda: rejected(agent, "replayed"))
        published = fleet.get_json(device_id, "status.json")
        assert published is not None
        # The certificate fingerprint, for hospital IT to pin; the signed audit checkpoint
        # beside the status (written here by hand: the box checkpoints every N rows).
        assert published["tls"]["fingerprint_sha256"] == tls.fingerprint_sha256(
            data / "tls" / "box.crt"
        )
        checkpoint = audit_checkpoints.write(settings, ctx.pool.get(), "rows")
        assert checkpoint is not None
        poll(
            "the audit checkpoint beside the status",
            lambda: (fleet.get_json(device_id, audit_checkpoints.BUCKET_DOC) or {}).get("row_id")
            == checkpoint["row_id"],
        )
        poll(
            "the rejection in status.json",
            lambda: (fleet.get_json(device_id, "status.json") or {})
            .get("desired_state", {}).get("state") == "rejected",
        )

        # The fleet flips the mode; the box follows within a round and reports it.
        code, out, err = cli(capsys, "fleet", "set", "clinic-a", "mode=offline", "--key", str(key))
        assert code == 0, err
        poll(
            "mode offline applied",
            lambda: effective_mode(ctx.pool.get(), ctx.settings) is Mode.OFFLINE,
        )
        poll(
            "the last status says offline",
            lambda: [r for r in fleet_rows(capsys) if r["mode"] == "offline"],
        )
    finally:
        agent.stop()
        ctx.pool.close_all()

    db = open_database(settings.db_path)
    try:
        actions = [
            (r[0], r[1])
            for r in db.execute(
                "SELECT action, outcome FROM audit_log WHERE action LIKE 'fleet.%' ORDER BY id"
            )
        ]
        applied = db.execute(
            "SELECT detail FROM audit_log WHERE action = 'fleet.desired.apply' ORDER BY id"
        ).fetchall()
    finally:
        db.conn.close()
    assert ("fleet.desired.reject", "failure") in actions
    assert [a for a in actions if a[0] == "fleet.desired.apply"] == [
        ("fleet.desired.apply", "success")
    ] * 3
    assert json.loads(applied[0][0])["sha256"] == signing.document_sha256(first)

    # A second provision is refused.
    for name in remote.env():
        monkeypatch.delenv(name)
    code, _, err = cli(
        capsys, "provision", "--data-dir", str(data), "--bundle", str(bundle),
        "--admin-username", "chief", "--admin-password-stdin", stdin=PASSWORD + "\n",
    )
    assert code == 1 and "already provisioned" in err


def rejected(agent: FleetAgent, reason: str) -> dict[str, Any] | None:
    report = agent.report
    if report.state == "rejected" and reason in (report.reason or ""):
        return {"serial": report.serial, "reason": report.reason}
    return None


def test_wrong_credentials_in_bundle_are_a_bad_answer(
    remote: Remote,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in remote.env().items():
        monkeypatch.setenv(name, value)
    key = tmp_path / "fleet_key.pem"
    assert cli(capsys, "fleet", "keygen", "--out", str(key))[0] == 0
    bundle = tmp_path / "b.json"
    code, _, err = cli(
        capsys, "fleet", "enroll-bundle", "--key", str(key), "--device-name", "x",
        "--site-name", "X", "--bucket", "no-such-bucket", "--out", str(bundle),
    )
    assert code == 0, err
    for name in remote.env():
        monkeypatch.delenv(name)
    data = tmp_path / "box"
    code, _, err = cli(
        capsys, "provision", "--data-dir", str(data), "--bundle", str(bundle),
        "--admin-username", "chief", "--admin-password-stdin", stdin=PASSWORD + "\n",
    )
    assert code == 2 and err.startswith("radiant: bucket: "), err
    assert not data.exists()
