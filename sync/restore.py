"""Replacing a dead box: ``radiant restore --from-remote`` fills an EMPTY data dir from the
bucket. The database comes from the Litestream replica (``litestream restore``), or with
``--snapshot`` from the newest encrypted snapshot; then every file the restored index keeps
locally (instances not evicted, volumes, quarantine) is copied back through the crypt remote,
and ``radiant fsck`` checks sizes and SHA-256 hashes against the index. The new box adopts the
dead box's prefix as its device id, so it carries on in the same folder of the bucket.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.config import Settings, check_sync_prefix, prepare_data_dir
from appliance.context import prepare
from appliance.db.connection import open_database
from appliance.dicom.fsck import FsckReport, fsck
from sync import crypt_keys, layout, litestream, rclone, snapshot
from sync.identity import adopt_device_id
from sync.probe import probe
from sync.rclone import STORE, Rclone, RcloneError


class RestoreError(Exception):
    """Restore cannot proceed; the message is one line."""


@dataclass
class RestoreReport:
    database_from: str
    files: int
    bytes: int
    fsck: FsckReport
    notes: list[str] = field(default_factory=list)


def prefixes(settings: Settings) -> list[str]:
    """Top-level folders of the bucket (the devices that replicate into it)."""
    result = Rclone(settings).run(
        "lsf", f"{STORE}:{settings.sync_bucket}", "--dirs-only", check=False, timeout=120
    )
    return [line.strip().rstrip("/") for line in result.stdout.splitlines() if line.strip()]


def restore_from_remote(
    settings: Settings,
    *,
    keys: crypt_keys.CryptKeys | None,
    prefix: str | None,
    use_snapshot: bool = False,
    say: Callable[[str], None] = print,
) -> RestoreReport:
    """See the module docstring; raises RestoreError with one line."""
    if not settings.sync_remote:
        raise RestoreError("RADIANT_SYNC_REMOTE is not set: say which bucket to restore from")
    data_dir = settings.data_dir
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RestoreError(f"{data_dir} is not empty: restore only into an empty data dir")
    chosen = prefix or settings.sync_prefix
    prepare_data_dir(settings)
    try:
        return _restore(settings, keys, chosen, use_snapshot, say)
    except BaseException:
        # The folder was empty: leave it empty, so that the next attempt may start over.
        for entry in list(data_dir.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        raise


def _restore(
    settings: Settings,
    keys: crypt_keys.CryptKeys | None,
    chosen: str | None,
    use_snapshot: bool,
    say: Callable[[str], None],
) -> RestoreReport:
    data_dir = settings.data_dir
    if settings.sync_encrypt:
        if keys is None:
            raise RestoreError(
                "the files are encrypted: give the passphrase and salt with --passphrase-stdin"
            )
        crypt_keys.store(settings, keys)
    if not chosen:
        rclone.write_config(settings, prefix="unknown", keys=keys)
        found = prefixes(settings)
        listing = ", ".join(found) if found else "none found"
        raise RestoreError(
            f"give the dead box's prefix with --prefix (folders in the bucket: {listing})"
        )
    try:
        check_sync_prefix(chosen)
    except ValueError as exc:
        raise RestoreError(f"--prefix: {exc}") from None
    adopt_device_id(data_dir, chosen)
    rclone.write_config(settings, prefix=chosen, keys=keys)
    litestream.write_config(settings, prefix=chosen)
    remote = Rclone(settings)
    reach = probe(settings, remote)
    if not reach.ok:
        raise RestoreError(reach.detail or "the bucket cannot be reached")
    say(f"restoring the database of {chosen} ...")
    if use_snapshot:
        name = snapshot.fetch_newest(remote, settings.db_path)
        database_from = f"snapshot {name}"
    else:
        try:
            litestream.restore(settings)
        except litestream.LitestreamError as exc:
            raise RestoreError(f"{exc} (try --snapshot for the encrypted snapshot)") from None
        database_from = "litestream replica"
    settings.db_path.chmod(0o600)
    keys_list = _local_files(settings)
    list_file = layout.scratch_dir(settings) / "restore-list.txt"
    list_file.write_text("".join(f"{k}\n" for k, _ in keys_list), encoding="utf-8")
    say(f"restoring {len(keys_list)} files ...")
    notes: list[str] = []
    try:
        remote.copy_files_back(list_file, data_dir)
    except RcloneError as exc:
        notes.append(f"some files could not be copied back: {exc.detail}")
    finally:
        list_file.unlink(missing_ok=True)
    _tighten(settings)
    os.sync()
    ctx = prepare(settings)
    try:
        report = fsck(ctx)
    finally:
        ctx.pool.close_all()
    return RestoreReport(
        database_from,
        files=len(keys_list),
        bytes=sum(size for _, size in keys_list),
        fsck=report,
        notes=notes,
    )


def _local_files(settings: Settings) -> list[tuple[str, int]]:
    """Queue keys and sizes of the files the restored index keeps on the box."""
    db = open_database(settings.db_path)
    try:
        rows = db.execute(
            "SELECT ? || storage_key, size FROM instances WHERE storage_state = 'local'"
            " UNION SELECT ? || storage_key, size FROM volumes WHERE storage_key IS NOT NULL"
            " UNION SELECT ? || storage_path, size FROM quarantine",
            (layout.OBJECTS + "/", layout.OBJECTS + "/", layout.QUARANTINE + "/"),
        ).fetchall()
    finally:
        db.conn.close()
    return sorted((str(r[0]), int(r[1] or 0)) for r in rows)


def _tighten(settings: Settings) -> None:
    """Files as the object store writes them: 0600, folders 0700."""
    for folder in (layout.OBJECTS, layout.QUARANTINE):
        for dirpath, _dirs, files in os.walk(settings.data_dir / folder):
            os.chmod(dirpath, 0o700)
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o600)
