"""The uploader counts a file as verified when rclone's own hash check of its upload passed: the
real rclone binary against S3 (moto_server) and Azure Blob (Azurite), through crypt and without.

``Rclone.copy_confirmed`` reads rclone's debug log; if that log's wording ever changed, every
file would quietly fall back to the slow second pass (cryptcheck) and nothing else would fail,
so this test pins the wording of the rclone we ship: a fresh upload is confirmed, a file rclone
skipped as already there is not.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from appliance.context import prepare
from sync import queue as sync_queue
from sync import rclone as sync_rclone
from sync.rclone import FILES, Rclone, RcloneError
from sync.uploader import Uploader
from tests.sync_servers import Remote, azurite, moto_s3

pytestmark = pytest.mark.integration
SERVERS: dict[str, Callable[[Path], AbstractContextManager[Remote]]] = {
    "s3": moto_s3,
    "azure": azurite,
}


@pytest.mark.parametrize("encrypt", [True, False], ids=["crypt", "plain"])
@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_fresh_uploads_are_confirmed_by_hash_and_skipped_ones_are_not(
    kind: str, encrypt: bool, tmp_path: Path
) -> None:
    with SERVERS[kind](tmp_path / "server") as server:
        settings = server.settings(tmp_path / "box", sync_encrypt=encrypt)
        sync_rclone.write_config(settings)
        keys = [f"objects/1.2.840.{n}/{n:04d}.dcm" for n in range(12)]
        for n, key in enumerate(keys):
            path = settings.data_dir / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes([n]) * (1000 + 977 * n))
        files = tmp_path / "files.txt"
        files.write_text("".join(f"{key}\n" for key in keys), encoding="utf-8")
        remote = Rclone(settings)

        first = remote.copy_confirmed(settings.data_dir, files, f"{FILES}:", tmp_path / "1.log")
        again = remote.copy_confirmed(settings.data_dir, files, f"{FILES}:", tmp_path / "2.log")

        assert first == set(keys)
        assert again == set()


class _CopyHalfThenFail(Rclone):
    """The real rclone uploads the first half of each list, then the copy fails as rclone
    does when some files of a batch could not be sent (a connection reset mid-batch)."""

    def copy_confirmed(self, source: Path, list_file: Path, dest: str, log_file: Path) -> set[str]:
        keys = list_file.read_text(encoding="utf-8").splitlines()
        half = list_file.with_suffix(".half")
        half.write_text("".join(f"{k}\n" for k in keys[: len(keys) // 2]), encoding="utf-8")
        super().copy_confirmed(source, half, dest, log_file)
        raise RcloneError("copy", 1, "Failed to copy: 1 error: connection reset by peer")


@pytest.mark.parametrize("reachable", [True, False], ids=["bucket-there", "bucket-gone"])
def test_a_failed_batch_keeps_the_uploads_rclone_confirmed(reachable: bool, tmp_path: Path) -> None:
    """When rclone fails part-way through a batch, the files it had already stored and
    confirmed by hash are done; only the others are failed (bucket still there) or back to
    pending (bucket gone), instead of the whole batch being sent again."""
    with moto_s3(tmp_path / "server") as server:
        settings = server.settings(tmp_path / "box", sync_encrypt=True)
        ctx = prepare(settings)
        try:
            sync_rclone.write_config(settings)
            db = ctx.pool.get()
            keys = [f"objects/1.2.840.{n}/{n:04d}.dcm" for n in range(8)]
            for n, key in enumerate(keys):
                path = settings.data_dir / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(bytes([n]) * (2000 + 311 * n))
                sync_queue.enqueue(db, key, "instance", path.stat().st_size, None)
            uploader = Uploader(
                settings, ctx.pool.get, _CopyHalfThenFail(settings), reachable=lambda: reachable
            )

            report = uploader.drain(budget_s=60)

            status = dict(db.execute("SELECT object_key, status FROM sync_queue").fetchall())
            sent = set(keys[:4])
            assert {k for k, s in status.items() if s == "done"} == sent
            rest = "failed" if reachable else "pending"
            assert {k for k, s in status.items() if s == rest} == set(keys) - sent
            assert report.uploaded == len(sent)
            stored = {
                entry["Path"] for entry in Rclone(settings).list_json(f"{FILES}:", "--recursive")
            }
            assert {k for k in stored if k.endswith(".dcm")} == sent
        finally:
            ctx.pool.close_all()
