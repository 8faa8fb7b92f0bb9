"""Local disk eviction and fetch-back, against ``rclone serve s3``.

Of six real studies only the one that is signed (final report), verified in the bucket and
older than the retention period loses its DICOM files when the disk is "full"; opening one of
its instances through the API fetches it back from the bucket (online) or answers 409
(offline).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance.app import create_app
from appliance.audit.models import Actor
from appliance.auth import service as auth_service
from appliance.auth.models import Role, UserCreate
from appliance.config import Mode
from appliance.context import AppContext, prepare
from appliance.db.connection import transaction
from appliance.db.rows import new_id, now_iso
from sync import eviction
from sync.manager import SyncManager
from sync.mode import set_mode
from tests.dicom_files import instance_files
from tests.sync_servers import rclone_s3, sha256

pytestmark = pytest.mark.integration
ACTOR = Actor.system("test")
OLD = "2020-01-01T00:00:00.000000Z"
PASSWORD = "retention-password"


def study_ids(ctx: AppContext) -> list[str]:
    return [str(r[0]) for r in ctx.pool.get().execute("SELECT id FROM studies ORDER BY study_uid")]


def report(ctx: AppContext, study_id: str, state: str) -> None:
    db = ctx.pool.get()
    with transaction(db):
        db.execute(
            "INSERT INTO reports (id, study_id, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (new_id(), study_id, state, now_iso(), now_iso()),
        )


def age(ctx: AppContext, study_id: str) -> None:
    db = ctx.pool.get()
    with transaction(db):
        db.execute(
            "UPDATE studies SET last_instance_at = ?, created_at = ? WHERE id = ?",
            (OLD, OLD, study_id),
        )


def states(ctx: AppContext, study_id: str) -> set[str]:
    return {
        str(r[0])
        for r in ctx.pool.get().execute(
            "SELECT i.storage_state FROM instances i JOIN series s ON s.id = i.series_id"
            " WHERE s.study_id = ?",
            (study_id,),
        )
    }


def test_only_final_synced_old_studies_are_evicted_and_fetched_back(tmp_path: Path) -> None:
    files = instance_files("dicomdir_pcir_3patients_prior_current")
    with rclone_s3(tmp_path / "server") as remote:
        settings = remote.settings(
            tmp_path / "data", mode=Mode.ONLINE, evict_free_gb=100_000, retention_days=30
        )
        ctx = prepare(settings)
        manager = SyncManager(ctx)
        try:
            for path in files:
                result = ctx.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR)
                assert result.study_id is not None
            ids = study_ids(ctx)
            assert len(ids) == 6
            manager.run_round()  # uploads and verifies; the disk is "full": evicts what qualifies
            assert manager.last_drain is not None and manager.last_drain.uploaded == len(files)
            assert all(states(ctx, s) == {"local"} for s in ids)  # nothing qualified yet

            evictable, recent, draft, unsigned, unsynced = ids[0], ids[1], ids[2], ids[3], ids[4]
            for study in (evictable, recent, draft, unsynced):
                report(ctx, study, "draft" if study == draft else "final")
            for study in (evictable, draft, unsigned, unsynced):
                age(ctx, study)
            db = ctx.pool.get()
            with transaction(db):
                db.execute(  # the unsynced study's uploads failed: not in the bucket
                    "UPDATE sync_queue SET status = 'failed', last_error = 'test'"
                    " WHERE object_key IN (SELECT 'objects/' || i.storage_key FROM instances i"
                    " JOIN series s ON s.id = i.series_id WHERE s.study_id = ?)",
                    (unsynced,),
                )
            assert eviction.candidates(ctx.pool.get(), settings.retention_days) == [evictable]
            done = eviction.evict_if_needed(ctx)
            assert done.studies == 1 and done.files > 0
            assert states(ctx, evictable) == {"remote"}
            for study in (recent, draft, unsigned, unsynced, ids[5]):
                assert states(ctx, study) == {"local"}, study
            evicted = [
                (str(r[0]), str(r[1]), str(r[2]))
                for r in ctx.pool.get().execute(
                    "SELECT i.id, i.storage_key, i.sha256 FROM instances i"
                    " JOIN series s ON s.id = i.series_id WHERE s.study_id = ?",
                    (evictable,),
                )
            ]
            assert all(not ctx.store.path(key).exists() for _, key, _ in evicted)
            auth_service.create_user(
                ctx.pool.get(),
                UserCreate(username="viewer", password=PASSWORD, role=Role.VIEWER),
                ACTOR,
            )
            manager.stop()
        finally:
            ctx.pool.close_all()

        app = create_app(settings, with_ui=False, with_receiver=False)
        with TestClient(app) as client:
            token = client.post(
                "/api/auth/token", data={"username": "viewer", "password": PASSWORD}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            instance_id, key, digest = evicted[0]
            answer = client.get(f"/api/instances/{instance_id}/file", headers=headers)
            assert answer.status_code == 200, answer.text
            assert sha256(answer.content) == digest
            assert app.state.ctx.store.path(key).is_file()
            set_mode(app.state.ctx.pool.get(), settings, Mode.OFFLINE, ACTOR)
            refused = client.get(f"/api/instances/{evicted[1][0]}/file", headers=headers)
            assert refused.status_code == 409
            assert "not kept on this appliance" in refused.json()["detail"]
            assert len(evicted) > 1
