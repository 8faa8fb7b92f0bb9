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

from sync import rclone as sync_rclone
from sync.rclone import FILES, Rclone
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
