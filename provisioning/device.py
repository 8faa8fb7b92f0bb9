"""The box's identity: its device id (the file :mod:`sync.identity` keeps, so replication and
the fleet use the same id) and its Ed25519 key pair, generated on the box.

Files in the data dir: ``device_id``, ``device_key.pem`` (private, 0600, never leaves the box)
and, pinned at enrollment, ``fleet/fleet_key.pub`` (the fleet's public key).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.config import Settings
from provisioning import signing
from sync.identity import device_id

DEVICE_KEY_FILE = "device_key.pem"
FLEET_DIR = "fleet"
FLEET_KEY_FILE = "fleet_key.pub"


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    public_key: str  # base64 of the 32 raw bytes
    fingerprint: str


def device_key_path(settings: Settings) -> Path:
    return settings.data_dir / DEVICE_KEY_FILE


def fleet_key_path(settings: Settings) -> Path:
    return settings.data_dir / FLEET_DIR / FLEET_KEY_FILE


def ensure_device_key(settings: Settings) -> Ed25519PrivateKey:
    """The device's private key, generated once (0600, fsynced) when there is none."""
    path = device_key_path(settings)
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process was first: use its key
            signing.write_private_key(path, signing.generate())
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return signing.load_private_key(path)


def identity(settings: Settings) -> DeviceIdentity:
    """Device id and public key, creating either when missing."""
    public = ensure_device_key(settings).public_key()
    return DeviceIdentity(
        device_id(settings), signing.public_text(public), signing.fingerprint(public)
    )


def pinned_fleet_key(settings: Settings) -> Ed25519PublicKey | None:
    """The fleet's public key pinned at enrollment, None when the box has none."""
    path = fleet_key_path(settings)
    if not path.exists():
        return None
    return signing.load_public_key(path)


def pin_fleet_key(settings: Settings, key: Ed25519PublicKey) -> None:
    signing.write_atomic(fleet_key_path(settings), (signing.public_text(key) + "\n").encode())
