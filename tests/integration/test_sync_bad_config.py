"""Bad replication settings answer one clear line: an unknown remote or a missing bucket name
stop the command before anything runs; a bucket that does not exist on the server is named by
``radiant sync check`` and reported by the running sync (Litestream kept stopped)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.context import prepare
from sync import status
from sync.manager import SyncManager
from tests.servers import RADIANT, clean_env
from tests.sync_servers import moto_s3

pytestmark = pytest.mark.integration


def check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RADIANT, "sync", "check", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=tmp_path,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"RADIANT_SYNC_REMOTE": "gcs"},
            "configuration error: RADIANT_SYNC_REMOTE: unknown remote 'gcs': must be s3, azure"
            " or empty (no replication)",
        ),
        (
            {"RADIANT_SYNC_REMOTE": "s3"},
            "configuration error: RADIANT_SYNC_BUCKET: must be set when RADIANT_SYNC_REMOTE=s3"
            " (the bucket's name)",
        ),
        (
            {"RADIANT_SYNC_REMOTE": "azure", "RADIANT_SYNC_BUCKET": "radiant"},
            "configuration error: RADIANT_SYNC_AZURE_KEY: RADIANT_SYNC_AZURE_ACCOUNT and this"
            " must be set when RADIANT_SYNC_REMOTE=azure",
        ),
    ],
)
def test_invalid_settings_are_one_line(tmp_path: Path, env: dict[str, str], line: str) -> None:
    result = check(tmp_path, **env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]
    assert result.stdout == ""


def test_absent_bucket_is_one_line_and_keeps_litestream_stopped(tmp_path: Path) -> None:
    with moto_s3(tmp_path / "server") as remote:
        env = remote.env(RADIANT_SYNC_BUCKET="no-such-bucket")
        result = check(tmp_path, **env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr.strip().splitlines() == [
            f"radiant: S3 bucket 'no-such-bucket' at {remote.endpoint} does not exist: create it"
            " (the appliance never creates buckets)"
        ]
        ok = check(tmp_path, **remote.env())
        assert ok.returncode == 0 and ok.stdout.startswith("ok: S3 bucket 'radiant-bucket'")

        settings = remote.settings(tmp_path / "box", sync_bucket="no-such-bucket", mode="online")
        ctx = prepare(settings)
        manager = SyncManager(ctx)
        try:
            manager.run_round()
            report = status.compute(settings, ctx.pool.get())
            assert report.reachability == "no_bucket"
            assert report.last_error is not None and "does not exist" in report.last_error
            assert report.database.running is False
            assert remote.rclone("lsf", "raw:").stdout.strip() == "radiant-bucket/"
        finally:
            manager.stop()
            ctx.pool.close_all()
