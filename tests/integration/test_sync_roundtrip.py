"""Offline work reaches the bucket once the box goes online: S3 (moto_server) and Azure Blob
(Azurite), with the real Litestream and rclone binaries.

A study is ingested and a patient created while offline; nothing leaves the box. After the
switch to online, the Litestream replica restores to a database with the same rows and every
file is in the bucket, encrypted (no ``DICM`` at offset 128 of any stored object), decrypting to
the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import sqlite_utils

from appliance.audit.models import Actor
from appliance.config import Mode
from appliance.context import AppContext, prepare
from appliance.db.connection import open_database
from appliance.patients import service as patients
from appliance.patients.models import PatientCreate
from sync import layout, litestream, status
from sync.manager import SyncManager
from sync.mode import set_mode
from tests.dicom_files import instance_files
from tests.sync_servers import Remote, azurite, moto_s3, poll, sha256

pytestmark = pytest.mark.integration
ACTOR = Actor.system("test")
STUDY = "mr_siemens_t1_sag_brain_35sl"
SERVERS: dict[str, Callable[[Path], AbstractContextManager[Remote]]] = {
    "s3": moto_s3,
    "azure": azurite,
}


def table_rows(db: sqlite_utils.Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a stable order."""
    names = [
        str(r[0])
        for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {n: sorted(map(tuple, db.execute(f"SELECT * FROM {n}")), key=repr) for n in names}


def replica_rows(ctx: AppContext, out: Path) -> dict[str, list[tuple[object, ...]]] | None:
    """The rows of a fresh ``litestream restore`` of the replica (None when none exists yet)."""
    out.unlink(missing_ok=True)
    try:
        litestream.restore(ctx.settings, output=out, timeout=60)
    except litestream.LitestreamError:
        return None
    db = open_database(out)
    try:
        return table_rows(db)
    finally:
        db.conn.close()


def drained(ctx: AppContext) -> bool:
    counts = status.compute(ctx.settings, ctx.pool.get()).objects
    return counts.pending + counts.uploading + counts.failed == 0 and counts.done > 0


@pytest.fixture(params=sorted(SERVERS))
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remote]:
    with SERVERS[request.param](tmp_path / "server") as server:
        yield server


def test_offline_work_is_replicated_encrypted_once_online(remote: Remote, tmp_path: Path) -> None:
    settings = remote.settings(tmp_path / "data")
    ctx = prepare(settings)
    manager = SyncManager(ctx)
    try:
        # Offline: ingest a real study and write rows; the manager runs but ships nothing.
        files = instance_files(STUDY)
        for path in files:
            ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
        patients.create(
            ctx.pool.get(),
            PatientCreate(patient_id="SYNC-1", first_name="Ada", last_name="Offline"),
            ACTOR,
        )
        manager.start()
        manager.wake()
        poll("a round in offline mode", lambda: layout.state_file(settings).exists())
        assert remote.rclone("lsf", "-R", f"raw:{remote.bucket}").stdout == ""
        queued = status.compute(settings, ctx.pool.get())
        assert queued.mode is Mode.OFFLINE and queued.objects.pending == len(files)
        assert queued.database.running is False

        # Online: everything reaches the bucket.
        set_mode(ctx.pool.get(), settings, Mode.ONLINE, ACTOR)
        manager.wake()
        poll("the file queue drained", lambda: drained(ctx), timeout=120)
        db = ctx.pool.get()
        expected = table_rows(db)
        poll(
            "the replica restores to the same rows",
            lambda: replica_rows(ctx, tmp_path / "replica.db") == table_rows(ctx.pool.get()),
            timeout=90,
            interval=1.0,
        )
        assert len(expected["instances"]) == len(files)

        prefix = status.compute(settings, db).remote
        assert prefix is not None
        raw = remote.download(f"{prefix.prefix}/files", tmp_path / "raw")
        assert raw, "no object in the bucket"
        for name, data in raw.items():
            assert data[128:132] != b"DICM", f"{name} is stored in the clear"
            assert b"objects" not in name.encode() and "dicom" not in name, "names are readable"
        decrypted = tmp_path / "decrypted"
        ctx_rclone = manager.rclone
        ctx_rclone.run("copy", "files:objects", str(decrypted))
        local = {
            str(r[0]): str(r[1]) for r in db.execute("SELECT storage_key, sha256 FROM instances")
        }
        remote_hashes = {
            p.relative_to(decrypted).as_posix(): sha256(p.read_bytes())
            for p in decrypted.rglob("*")
            if p.is_file()
        }
        assert remote_hashes == local
        final = status.compute(settings, db)
        assert final.database.running and final.database.lag_s is not None
        assert final.reachability == "reachable" and final.last_snapshot_at is not None
    finally:
        manager.stop()
        ctx.pool.close_all()
