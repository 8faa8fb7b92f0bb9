"""The box's device id, the default folder of its data in the bucket.

Provisioning (first boot, fleet enrollment) is meant to write ``<data_dir>/device_id``; until it
exists a stable id is generated once into that file (``radiant-`` and 12 hex digits). A box
restored from the bucket adopts the dead box's id, so it carries on in the same folder.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

from appliance.config import Settings, check_sync_prefix
from radiant_common.durable import write_atomic

DEVICE_ID_FILE = "device_id"


def device_id(settings: Settings) -> str:
    """The device id, generating and storing one (0600, fsynced) when there is none."""
    path = settings.data_dir / DEVICE_ID_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    if text:
        return text
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):  # another thread or process was first
        write_atomic(path, f"radiant-{secrets.token_hex(6)}\n".encode("ascii"), replace=False)
    return path.read_text(encoding="ascii").strip()


def adopt_device_id(data_dir: Path, value: str) -> str:
    """Write ``value`` as the device id of ``data_dir`` (used by restore); returns it."""
    check_sync_prefix(value)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(data_dir / DEVICE_ID_FILE, f"{value}\n".encode("ascii"))
    return value


def sync_prefix(settings: Settings) -> str:
    """``RADIANT_SYNC_PREFIX``, else the device id."""
    return settings.sync_prefix or device_id(settings)
