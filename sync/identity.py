"""The box's device id, the default folder of its data in the bucket.

Provisioning (first boot, fleet enrollment) is meant to write ``<data_dir>/device_id``; until it
exists a stable id is generated once into that file (``radiant-`` and 12 hex digits). A box
restored from the bucket adopts the dead box's id, so it carries on in the same folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from appliance.config import Settings, check_sync_prefix

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
    tmp = _write_temp(settings.data_dir, f"radiant-{secrets.token_hex(6)}")
    try:
        os.link(tmp, settings.data_dir / DEVICE_ID_FILE)  # fails if another thread was first
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return (settings.data_dir / DEVICE_ID_FILE).read_text(encoding="ascii").strip()


def _write_temp(data_dir: Path, value: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = data_dir / f".tmp-{DEVICE_ID_FILE}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def adopt_device_id(data_dir: Path, value: str) -> str:
    """Write ``value`` as the device id of ``data_dir`` (used by restore); returns it."""
    check_sync_prefix(value)
    os.replace(_write_temp(data_dir, value), data_dir / DEVICE_ID_FILE)
    return value


def sync_prefix(settings: Settings) -> str:
    """``RADIANT_SYNC_PREFIX``, else the device id."""
    return settings.sync_prefix or device_id(settings)
