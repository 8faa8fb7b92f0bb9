"""Where replication keeps its files: on the box (under the data dir) and in the bucket.

On the box, ``<data_dir>/sync/`` holds the generated ``litestream.yml`` and ``rclone.conf``,
the crypt keys (``crypt.json``), the worker's ``state.json`` and scratch files; all 0600 in a
0700 folder. In the bucket, everything of one box lives under ``<prefix>/``:

``<prefix>/db/``
    the Litestream replica of ``radiant.db`` (LTX files; not encrypted by the box)
``<prefix>/files/``
    the rclone crypt root (names and contents encrypted on the box), which mirrors the data
    dir: ``objects/...`` (the object store), ``quarantine/...`` and ``snapshots/...`` (the
    nightly database snapshots).

Queue keys (``sync_queue.object_key``) are paths relative to the data dir, e.g.
``objects/dicom/<study>/<series>/<sop>.dcm``, so one ``rclone copy --files-from`` of the data dir
ships any mix of them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from appliance.config import Settings
from radiant_common.durable import write_atomic

OBJECTS = "objects"
QUARANTINE = "quarantine"
SNAPSHOTS = "snapshots"
DB_FOLDER = "db"
FILES_FOLDER = "files"
_SOCKET_MAX = 100  # sun_path holds 108 bytes


def sync_dir(settings: Settings) -> Path:
    """``<data_dir>/sync``, created 0700."""
    path = settings.data_dir / "sync"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def litestream_config(settings: Settings) -> Path:
    return sync_dir(settings) / "litestream.yml"


def rclone_config(settings: Settings) -> Path:
    return sync_dir(settings) / "rclone.conf"


def crypt_keys(settings: Settings) -> Path:
    return sync_dir(settings) / "crypt.json"


def state_file(settings: Settings) -> Path:
    return sync_dir(settings) / "state.json"


def scratch_dir(settings: Settings) -> Path:
    """Temporary files of the worker (batch lists, snapshots, fetched files)."""
    path = sync_dir(settings) / "tmp"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def litestream_socket(settings: Settings) -> Path:
    """Litestream's control socket: in the sync folder, or under the system temp folder (named
    after the data dir) when that path is too long for a Unix socket."""
    candidate = sync_dir(settings) / "litestream.sock"
    if len(os.fsencode(candidate.resolve())) <= _SOCKET_MAX:
        return candidate.resolve()
    digest = hashlib.sha256(os.fsencode(settings.data_dir.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"radiant-litestream-{digest}.sock"


def object_key(storage_key: str) -> str:
    """Queue key of an object-store key."""
    return f"{OBJECTS}/{storage_key}"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (fsynced, folder too)."""
    write_atomic(path, text.encode("utf-8"), mode=0o600)
