"""Replication parts that need no server: generated config files, crypt keys, device id, the
queue triggers and the worker's bookkeeping, the mode switch (API, CLI, audit), the status."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils
from fastapi.testclient import TestClient

from appliance.audit.models import Actor
from appliance.config import Mode, Settings
from appliance.context import AppContext, prepare
from appliance.db.rows import now_iso
from radiant.cli import main as radiant
from sync import binaries, crypt_keys, layout, litestream, rclone
from sync import queue as sync_queue
from sync.identity import device_id, sync_prefix
from sync.mode import effective_mode, set_mode
from tests.dicom_files import DATA, instance_files

ACTOR = Actor.system("test")
MR = "mr_siemens_t1_sag_brain_35sl"


def s3_settings(data_dir: Path, **extra: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        sync_remote="s3",
        sync_bucket="hospital-bucket",
        sync_endpoint="http://127.0.0.1:9",
        sync_access_key="AKIDEXAMPLE",
        sync_secret_key="s3cr3t$with$dollars",
        **extra,  # type: ignore[arg-type]
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    context = prepare(Settings(data_dir=tmp_path / "data"))
    yield context  # type: ignore[misc]
    context.pool.close_all()


def test_generated_configs_are_private_and_hold_no_plain_passphrase(tmp_path: Path) -> None:
    settings = s3_settings(tmp_path / "data")
    settings.data_dir.mkdir()
    keys = crypt_keys.ensure(settings)
    conf = rclone.write_config(settings)
    yml = litestream.write_config(settings)
    for path in (conf, yml, layout.crypt_keys(settings)):
        assert mode_of(path) == 0o600, path
    assert mode_of(layout.sync_dir(settings)) == 0o700
    text = conf.read_text()
    assert keys.passphrase not in text and keys.salt not in text
    assert "type = crypt" in text and "no_check_bucket = true" in text
    prefix = sync_prefix(settings)
    assert f"remote = store:hospital-bucket/{prefix}/files" in text
    config = yml.read_text()
    assert f'path: "{prefix}/db"' in config and '"s3cr3t$with$dollars"' in config
    assert str(settings.db_path.resolve()) in config


def test_azure_config_uses_the_endpoint_in_a_file(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        sync_remote="azure",
        sync_bucket="radiant",
        sync_endpoint="http://127.0.0.1:10000/devstoreaccount1",
        sync_azure_account="devstoreaccount1",
        sync_azure_key="a2V5",
        sync_encrypt=False,
    )
    settings.data_dir.mkdir()
    config = litestream.write_config(settings).read_text()
    assert "type: abs" in config and 'endpoint: "http://127.0.0.1:10000/devstoreaccount1"' in config
    text = rclone.write_config(settings).read_text()
    assert "type = azureblob" in text and "type = alias" in text
    assert "no_check_container = true" in text


def test_child_env_keeps_aws_ca_bundle_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = s3_settings(tmp_path / "data")
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/custom.pem")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("RCLONE_CONFIG", "/root/.config/rclone/rclone.conf")
    env = binaries.child_env(settings)
    assert "AWS_CA_BUNDLE" not in env
    assert env["SSL_CERT_FILE"] == "/etc/ssl/custom.pem"
    assert env["RCLONE_CONFIG"] == str(layout.rclone_config(settings))
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/mine.pem")
    assert binaries.child_env(settings)["SSL_CERT_FILE"] == "/etc/ssl/mine.pem"


def test_crypt_keys_are_generated_once_and_parse_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    assert crypt_keys.load(settings) is None
    first = crypt_keys.ensure(settings)
    assert crypt_keys.ensure(settings) == first
    assert "passphrase" not in repr(first)
    assert crypt_keys.parse(first.lines()) == first
    assert crypt_keys.parse(f"{first.passphrase}\n{first.salt}\n") == first
    with pytest.raises(crypt_keys.KeysError):
        crypt_keys.parse("passphrase: short\n")
    layout.crypt_keys(settings).write_text("{not json")
    with pytest.raises(crypt_keys.KeysError, match="damaged"):
        crypt_keys.load(settings)


def test_device_id_is_generated_once_and_is_the_default_prefix(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    first = device_id(settings)
    assert first.startswith("radiant-") and device_id(settings) == first
    assert sync_prefix(settings) == first
    assert sync_prefix(Settings(data_dir=settings.data_dir, sync_prefix="/site-7/box/")) == (
        "site-7/box"
    )


def queue_rows(db: sqlite_utils.Database) -> dict[str, tuple[str, str, str]]:
    return {
        str(r[0]): (str(r[1]), str(r[2]), str(r[3]))
        for r in db.execute("SELECT object_key, object_type, status, sha256 FROM sync_queue")
    }


def test_every_stored_file_gets_a_queue_row_in_its_transaction(ctx: AppContext) -> None:
    files = instance_files(MR)[:3]
    for path in files:
        ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
    ctx.ingestor.ingest(files[0].read_bytes(), source="test", actor=ACTOR)  # duplicate
    bad = ctx.ingestor.ingest(
        (DATA / "malformed" / "MR_truncated.dcm").read_bytes(), source="test", actor=ACTOR
    )
    db = ctx.pool.get()
    rows = queue_rows(db)
    keys = {
        f"objects/{r[0]}": r[1] for r in db.execute("SELECT storage_key, sha256 FROM instances")
    }
    assert {k: v for k, v in rows.items() if k.startswith("objects/")} == {
        k: ("dicom", "pending", sha) for k, sha in keys.items()
    }
    quarantined = [k for k, v in rows.items() if v[0] == "quarantine"]
    assert bad.outcome == "quarantined" and len(quarantined) == 1
    assert (ctx.settings.data_dir / quarantined[0]).is_file()

    # An overwrite stores a new file under a new key: a new row; the old one is settled later.
    ctx.ingestor.overwrite = True
    ctx.ingestor.ingest(files[0].read_bytes(), source="test", actor=ACTOR)
    assert len(queue_rows(db)) == len(rows) + 1


def test_worker_bookkeeping_leaves_other_queue_users_alone(ctx: AppContext) -> None:
    for path in instance_files(MR)[:2]:
        ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
    db = ctx.pool.get()
    db.execute(
        "INSERT INTO sync_queue (object_type, object_key, status, attempts, created_at,"
        " updated_at) VALUES ('pacs_send', 'pacs/report-1/PACS', 'uploading', 0, ?, ?)",
        (now_iso(), now_iso()),
    )
    claimed = sync_queue.claim(db, limit=10, max_bytes=1 << 30, retry_base_s=1.0)
    assert len(claimed) == 2 and all(i.object_key.startswith("objects/") for i in claimed)
    assert sync_queue.counts(db).uploading == 2
    assert sync_queue.reset_in_flight(db) == 2
    assert queue_rows(db)["pacs/report-1/PACS"][1] == "uploading"

    claimed = sync_queue.claim(db, limit=10, max_bytes=1 << 30, retry_base_s=1.0)
    # A new version enqueued meanwhile (trigger) must not be marked done by the old upload.
    db.execute(
        "UPDATE sync_queue SET sha256 = 'changed', status = 'pending' WHERE id = ?",
        (claimed[0].id,),
    )
    assert sync_queue.mark_done(db, claimed) == 1
    sync_queue.mark_failed(db, [claimed[1]], "boom")
    counts = sync_queue.counts(db)
    assert (counts.pending, counts.failed, counts.done, counts.last_error) == (1, 0, 1, None)
    assert sync_queue.retry_pause_s(1, 10) == 10 and sync_queue.retry_pause_s(20, 10) == 3600


def test_mode_switch_is_persisted_and_audited(ctx: AppContext) -> None:
    db = ctx.pool.get()
    assert effective_mode(db, ctx.settings) is Mode.OFFLINE
    change = set_mode(db, ctx.settings, Mode.ONLINE, ACTOR)
    assert (change.previous, change.mode) == (Mode.OFFLINE, Mode.ONLINE)
    assert effective_mode(db, ctx.settings) is Mode.ONLINE
    audit = db.execute(
        "SELECT actor, detail FROM audit_log WHERE action = 'system.mode'"
    ).fetchall()
    assert [(a, json.loads(d)) for a, d in audit] == [
        ("system:test", {"from": "offline", "to": "online"})
    ]


def test_mode_api_and_status_for_admins(
    client: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    admin = as_role("admin")
    status = client.get("/api/sync/status", headers=admin)
    assert status.status_code == 200
    body = status.json()
    assert body["configured"] is False and body["mode"] == "offline"
    assert body["objects"]["pending"] == 0 and body["database"]["running"] is False
    # Nothing configured to go online to: refused in words, still offline (tests/integration/
    # test_go_online.py goes online with remotes that answer).
    switched = client.post("/api/system/mode", headers=admin, json={"mode": "online"})
    assert switched.status_code == 409 and "Nothing to go online to" in switched.json()["detail"]
    assert client.get("/api/sync/status", headers=admin).json()["mode"] == "offline"
    offline = client.post("/api/system/mode", headers=admin, json={"mode": "offline"})
    assert offline.json() == {"mode": "offline", "previous": "offline"}
    assert client.post("/api/system/mode", headers=admin, json={"mode": "cloud"}).status_code == 422
    refused = client.post("/api/system/mode", headers=as_role("radiologist"), json={"mode": "x"})
    assert refused.status_code == 403


def test_mode_and_status_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert radiant(["mode", "--data-dir", data]) == 0
    assert capsys.readouterr().out == "offline\n"
    assert radiant(["mode", "online", "--yes", "--data-dir", data]) == 2  # nothing to go to
    assert "Nothing to go online to" in capsys.readouterr().err
    assert radiant(["mode", "offline", "--data-dir", data]) == 0
    assert radiant(["mode", "--data-dir", data]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["mode: offline (was offline)", "offline"]
    assert radiant(["sync", "status", "--data-dir", data]) == 0
    text = capsys.readouterr().out
    assert text.startswith("mode: offline; no remote configured")
    assert radiant(["sync", "status", "--json", "--data-dir", data]) == 0
    assert json.loads(capsys.readouterr().out)["configured"] is False


def test_litestream_times_with_nanoseconds_parse() -> None:
    moment = litestream.parse_time("2026-11-25T01:40:15.392631224Z")
    assert moment is not None and moment.microsecond == 392631 and moment.tzinfo is not None
    assert litestream.parse_time("garbage") is None


def test_only_files_rclone_confirmed_by_hash_count_as_verified(tmp_path: Path) -> None:
    """``rclone copy -vv --log-file`` lines: a "<hash> = <hex> OK" line confirms its file;
    a skipped file, a size-only line, an error or another line ending in OK does not (those go
    to cryptcheck). A name that itself holds ": md5 = " is still read whole."""
    log = tmp_path / "copy.log"
    stamp = "2026/12/07 09:29:15"
    lines = [
        f"{stamp} DEBUG : objects/a.dcm: size = 526228 OK",
        f"{stamp} DEBUG : objects/a.dcm: md5 = aaee187984fdc760ce82ca9adac28e77 OK",
        f"{stamp} INFO  : objects/a.dcm: Copied (new)",
        f"{stamp} DEBUG : objects/b.dcm: size = 10 OK",
        f"{stamp} DEBUG : objects/b.dcm: Unchanged skipping",
        f"{stamp} ERROR : objects/c.dcm: corrupted on transfer: md5 encrypted hashes differ",
        f"{stamp} DEBUG : objects/d.dcm: md5 = OK",
        f"{stamp} INFO  : objects/e.dcm: md5 = aaee187984fdc760ce82ca9adac28e77 OK",
        f"{stamp} DEBUG : quarantine/x: md5 = y.dcm: md5 = e2b0147855fb7a9d5376927738773e86 OK",
        "not a log line: md5 = e2b0147855fb7a9d5376927738773e86 OK",
    ]
    log.write_text("\n".join(lines) + "\n")
    assert rclone.confirmed_uploads(log) == {"objects/a.dcm", "quarantine/x: md5 = y.dcm"}
    assert rclone.confirmed_uploads(tmp_path / "absent.log") == set()
