"""Outage and disaster recovery against ``rclone serve s3`` (S3 over a folder, so the bucket
survives the server being stopped and started again on the same port).

- The bucket goes away in the middle of an ingest and comes back: nothing is lost, the queue
  drains, and meanwhile the status reports the database replica as stale.
- A replacement box restored from the bucket (``radiant restore --from-remote``) equals the
  original (rows, file hashes, fsck clean) and serves the restored studies.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from appliance.audit.models import Actor
from appliance.auth import service as auth_service
from appliance.auth.models import Role, UserCreate
from appliance.config import Mode
from appliance.context import prepare
from appliance.db.connection import open_database
from appliance.patients import service as patients
from appliance.patients.models import PatientCreate
from radiant.cli import main as radiant
from sync import status
from sync.identity import device_id
from sync.manager import SyncManager
from tests.dicom_files import DATA, instance_files
from tests.integration.test_sync_roundtrip import drained, replica_rows, table_rows
from tests.servers import RADIANT, clean_env, free_port, running
from tests.sync_servers import poll, rclone_s3, sha256

pytestmark = pytest.mark.integration
ACTOR = Actor.system("test")
PASSWORD = "restored-box-password"


def test_outage_during_ingest_loses_nothing(tmp_path: Path) -> None:
    with rclone_s3(tmp_path / "server") as remote:
        settings = remote.settings(tmp_path / "data", mode=Mode.ONLINE)
        ctx = prepare(settings)
        manager = SyncManager(ctx)
        files = instance_files("mr_siemens_t1_sag_brain_35sl")
        try:
            manager.start()
            for path in files[:10]:
                ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
            poll("the first files synced", lambda: drained(ctx))
            poll(
                "a fresh database replica",
                lambda: not status.compute(settings, ctx.pool.get()).database.stale,
            )

            remote.stop()  # the network goes away mid-ingest
            for path in files[10:]:
                ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
            patients.create(
                ctx.pool.get(),
                PatientCreate(patient_id="OUT-1", first_name="Ola", last_name="Outage"),
                ACTOR,
            )
            during = poll(
                "the status to show the outage",
                lambda: (
                    s
                    if (s := status.compute(settings, ctx.pool.get())).database.stale
                    and s.reachability == "unreachable"
                    and s.objects.pending + s.objects.failed > 0
                    else None
                ),
            )
            assert during.database.lag_s is not None and during.database.lag_s > 3.0
            assert during.last_error and "unreachable" in during.last_error

            remote.start()  # the network is back
            poll("the queue drained after the outage", lambda: drained(ctx), timeout=120)
            after = status.compute(settings, ctx.pool.get())
            assert after.objects.done == len(files) and after.objects.failed == 0
            poll(
                "the replica caught up",
                lambda: replica_rows(ctx, tmp_path / "replica.db") == table_rows(ctx.pool.get()),
                timeout=90,
                interval=1.0,
            )
            poll(
                "the replica fresh again",
                lambda: not status.compute(settings, ctx.pool.get()).database.stale,
            )
        finally:
            manager.stop()
            ctx.pool.close_all()


def test_replacement_box_restored_from_the_bucket_equals_the_original(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with rclone_s3(tmp_path / "server") as remote:
        settings = remote.settings(tmp_path / "original", mode=Mode.ONLINE)
        ctx = prepare(settings)
        manager = SyncManager(ctx)
        try:
            db = ctx.pool.get()
            auth_service.create_user(
                db, UserCreate(username="admin", password=PASSWORD, role=Role.ADMIN), ACTOR
            )
            for path in instance_files("dicomdir_pcir_3patients_prior_current"):
                ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
            bad = ctx.ingestor.ingest(
                (DATA / "malformed" / "MR_truncated.dcm").read_bytes(), source="test", actor=ACTOR
            )
            assert bad.outcome == "quarantined"
            manager.start()
            poll("everything synced", lambda: drained(ctx), timeout=120)
            poll(
                "the replica holds every row",
                lambda: replica_rows(ctx, tmp_path / "replica.db") == table_rows(ctx.pool.get()),
                timeout=90,
                interval=1.0,
            )
        finally:
            manager.stop()
        original_rows = table_rows(ctx.pool.get())
        original_files = {
            p.relative_to(settings.data_dir).as_posix(): sha256(p.read_bytes())
            for folder in ("objects", "quarantine")
            for p in (settings.data_dir / folder).rglob("*")
            if p.is_file()
        }
        prefix = device_id(settings)
        ctx.pool.close_all()

        capsys.readouterr()
        assert radiant(["sync", "passphrase", "--data-dir", str(settings.data_dir)]) == 0
        keys = capsys.readouterr().out
        assert keys.startswith("passphrase: ") and "\nsalt: " in keys

        # The dead box is gone: a new, empty data dir is filled from the bucket.
        new_dir = tmp_path / "replacement"
        env = clean_env(**remote.env())
        restored = subprocess.run(
            [
                *RADIANT,
                "restore",
                "--from-remote",
                "--data-dir",
                str(new_dir),
                "--prefix",
                prefix,
                "--passphrase-stdin",
            ],
            input=keys,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
            timeout=300,
        )
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "consistent" in restored.stdout.splitlines()[-1]
        db = open_database(new_dir / "radiant.db")
        try:
            rows = table_rows(db)
        finally:
            db.conn.close()
        assert {n: len(r) for n, r in rows.items()} == {n: len(r) for n, r in original_rows.items()}
        assert rows["instances"] == original_rows["instances"]
        assert rows["audit_log"] == original_rows["audit_log"]
        restored_files = {
            p.relative_to(new_dir).as_posix(): sha256(p.read_bytes())
            for folder in ("objects", "quarantine")
            for p in (new_dir / folder).rglob("*")
            if p.is_file()
        }
        assert restored_files == original_files
        assert (new_dir / "device_id").read_text().strip() == prefix

        # The encrypted snapshot restores too (the fallback when the Litestream replica fails).
        from_snapshot = subprocess.run(
            [
                *RADIANT,
                "restore",
                "--from-remote",
                "--snapshot",
                "--data-dir",
                str(tmp_path / "from-snapshot"),
                "--prefix",
                prefix,
                "--passphrase-stdin",
            ],
            input=keys,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
            timeout=300,
        )
        assert from_snapshot.returncode == 0, from_snapshot.stdout + from_snapshot.stderr
        assert "from the snapshot radiant-" in from_snapshot.stdout
        snap = open_database(tmp_path / "from-snapshot" / "radiant.db")
        try:
            assert table_rows(snap)["instances"] == original_rows["instances"]
        finally:
            snap.conn.close()

        # The replacement box serves the restored studies (no remote configured on it here).
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [*RADIANT, "serve", "--port", str(port), "--data-dir", str(new_dir)]
        with running(serve, clean_env(), tmp_path, f"{base}/healthz"):
            token = httpx.post(
                f"{base}/api/auth/token", data={"username": "admin", "password": PASSWORD}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            studies = httpx.get(f"{base}/api/studies", headers=headers).json()
            assert studies["total"] == len(original_rows["studies"])
            first = studies["items"][0]["id"]
            detail = httpx.get(f"{base}/api/studies/{first}", headers=headers)
            assert detail.status_code == 200
            series_id = detail.json()["series"][0]["id"]
            instances = httpx.get(f"{base}/api/series/{series_id}/instances", headers=headers)
            answer = httpx.get(
                f"{base}/api/instances/{instances.json()[0]['id']}/file", headers=headers
            )
            assert answer.status_code == 200
            assert sha256(answer.content) == answer.headers["X-Content-SHA256"]
