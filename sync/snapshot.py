"""The encrypted database snapshot: ``VACUUM INTO`` a consistent copy of ``radiant.db`` and
ship it through the crypt remote to ``snapshots/radiant-<UTC time>.db`` (verified like any
file). The Litestream replica is not encrypted by the box; this copy is. The newest
:data:`KEEP` snapshots are kept."""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from appliance.config import Settings
from appliance.db.rows import utc_now
from appliance.logs import get_logger
from sync import layout
from sync.rclone import FILES, Rclone, RcloneError

log = get_logger("radiant.sync.snapshot")
KEEP = 7
PREFIX = "radiant-"


def take(settings: Settings, db: sqlite_utils.Database, rclone: Rclone) -> str:
    """Write, upload and verify one snapshot; returns its key (``snapshots/...``)."""
    name = f"{PREFIX}{utc_now().strftime('%Y%m%dT%H%M%SZ')}.db"
    key = f"{layout.SNAPSHOTS}/{name}"
    scratch = layout.scratch_dir(settings)
    local = scratch / key
    local.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    local.unlink(missing_ok=True)
    list_file = scratch / "snapshot-list.txt"
    combined = scratch / "snapshot-check.txt"
    try:
        db.execute("VACUUM INTO ?", (str(local),))
        local.chmod(0o600)
        list_file.write_text(key + "\n", encoding="utf-8")
        rclone.copy_files(scratch, list_file, f"{FILES}:")
        combined.unlink(missing_ok=True)
        rclone.verify(scratch, list_file, combined)
        lines = combined.read_text(encoding="utf-8").splitlines() if combined.exists() else []
        if f"= {key}" not in lines:
            raise RcloneError("cryptcheck", 1, "the uploaded snapshot did not verify")
    finally:
        local.unlink(missing_ok=True)
        list_file.unlink(missing_ok=True)
        combined.unlink(missing_ok=True)
    prune(rclone)
    log.info("snapshot_uploaded", key=key)
    return key


def names(rclone: Rclone) -> list[str]:
    """Snapshot file names in the bucket, oldest first."""
    result = rclone.run("lsf", f"{FILES}:{layout.SNAPSHOTS}", "--files-only", check=False)
    if result.returncode != 0:
        return []
    return sorted(n.strip() for n in result.stdout.splitlines() if n.strip().startswith(PREFIX))


def prune(rclone: Rclone, keep: int = KEEP) -> None:
    for name in names(rclone)[:-keep]:
        rclone.run("deletefile", f"{FILES}:{layout.SNAPSHOTS}/{name}", check=False)


def fetch_newest(rclone: Rclone, dest: Path) -> str:
    """Download the newest snapshot to ``dest``; returns its name."""
    found = names(rclone)
    if not found:
        raise RcloneError("lsf", 3, "no database snapshot in the bucket")
    rclone.fetch(f"{layout.SNAPSHOTS}/{found[-1]}", dest)
    return found[-1]
