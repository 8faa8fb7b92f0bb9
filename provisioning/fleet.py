"""The hospital IT side of the fleet (``radiant fleet``): the fleet key pair, enrollment
bundles, and reading and steering boxes through the bucket. Needs only the bucket's credentials
(``RADIANT_SYNC_*`` or flags) and the fleet key, never a box's data dir.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config import Settings
from appliance.db.rows import now_iso
from provisioning import desired, signing
from provisioning.bucket import (
    DESIRED_DOC,
    DEVICE_DOC,
    STATUS_DOC,
    DocumentError,
    FleetBucket,
    parse_document,
)
from provisioning.models import BUNDLE_SETTINGS, ENROLLMENT_FORMAT, REMOTE_ANSWERS


class FleetError(Exception):
    """A refused fleet operation (one line)."""


def keygen(private_path: Path, public_path: Path) -> str:
    """Create the fleet key pair (private PEM 0600, public base64); returns the fingerprint.
    Refuses to overwrite either file."""
    for path in (private_path, public_path):
        if path.exists():
            raise FleetError(f"{path} exists: the fleet key is never overwritten")
    key = signing.generate()
    signing.write_private_key(private_path, key)
    text = signing.public_text(key.public_key()) + "\n"
    signing.write_atomic(public_path, text.encode("ascii"), mode=0o644, replace=False)
    return signing.fingerprint(key.public_key())


def remote_answers(settings: Settings) -> dict[str, Any]:
    """The ``remote`` object of a bundle, from ``RADIANT_SYNC_*`` settings."""
    values: dict[str, Any] = {
        "remote": settings.sync_remote,
        "bucket": settings.sync_bucket,
        "prefix": settings.sync_prefix,
        "endpoint": settings.sync_endpoint or "",
        "region": settings.sync_region,
        "access_key": settings.sync_access_key.get_secret_value()
        if settings.sync_access_key
        else "",
        "secret_key": settings.sync_secret_key.get_secret_value()
        if settings.sync_secret_key
        else "",
        "azure_account": settings.sync_azure_account,
        "azure_key": settings.sync_azure_key.get_secret_value() if settings.sync_azure_key else "",
    }
    assert set(values) == REMOTE_ANSWERS
    return {k: v for k, v in values.items() if v}


def enroll_bundle(
    key: Ed25519PrivateKey, device_name: str, settings: Settings, preset: dict[str, Any]
) -> dict[str, Any]:
    """A signed enrollment bundle: the remote, the fleet's public key and ``preset`` answers."""
    if not settings.sync_remote:
        raise FleetError("no remote: set --remote/--bucket or RADIANT_SYNC_* (the bucket's)")
    if not device_name.strip() or len(device_name) > 64 or any(ord(c) < 32 for c in device_name):
        raise FleetError("--device-name: 1-64 printable characters")
    unknown = sorted(set(preset) - BUNDLE_SETTINGS)
    if unknown:
        raise FleetError(f"{unknown[0]}: not a setting a bundle can pre-fill")
    body = {
        "format": ENROLLMENT_FORMAT,
        "device_name": device_name.strip(),
        "created_at": now_iso(),
        "fleet_public_key": signing.public_text(key.public_key()),
        "remote": remote_answers(settings),
        "settings": {k: v for k, v in preset.items() if v not in (None, "")},
    }
    return signing.sign(body, key)


@dataclass
class DeviceView:
    """One box as the bucket shows it."""

    device_id: str
    device: dict[str, Any] | None
    status: dict[str, Any] | None
    desired: dict[str, Any] | None
    problems: list[str]

    @property
    def name(self) -> str | None:
        value = (self.device or {}).get("device_name") or (self.status or {}).get("device_name")
        return str(value) if value else None

    def age_s(self, now: datetime) -> float | None:
        stamp = (self.status or {}).get("reported_at")
        if not isinstance(stamp, str):
            return None
        try:
            when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        return max(0.0, (now - when).total_seconds())


def _view(device_id: str, texts: dict[str, str]) -> DeviceView:
    docs: dict[str, dict[str, Any] | None] = {}
    problems: list[str] = []
    for name in (DEVICE_DOC, STATUS_DOC, DESIRED_DOC):
        try:
            docs[name] = parse_document(texts.get(name, ""), f"{device_id}/{name}")
        except DocumentError as exc:
            docs[name] = None
            problems.append(str(exc))
    view = DeviceView(device_id, docs[DEVICE_DOC], docs[STATUS_DOC], docs[DESIRED_DOC], problems)
    # The box's key is the one it registered (device.json, self-signed); its status must match.
    if view.device is None:
        problems.append("not registered (no device.json)")
        return view
    try:
        key = signing.parse_public(str(view.device.get("public_key", "")))
        signing.verify(view.device, key)
        if view.status is not None:
            if view.status.get("public_key") != view.device.get("public_key"):
                problems.append("status.json names another device key than device.json")
            signing.verify(view.status, key)
    except (ValueError, signing.SignatureError) as exc:
        problems.append(f"signature: {exc}")
    return view


def devices(bucket: FleetBucket) -> list[DeviceView]:
    """Every box under ``fleet/devices`` (one rclone copy of their JSON documents)."""
    with tempfile.TemporaryDirectory(prefix="radiant-fleet-") as scratch:
        found = bucket.fetch_all(Path(scratch))
    return [_view(device_id, texts) for device_id, texts in sorted(found.items())]


def find(bucket: FleetBucket, name: str) -> DeviceView:
    """A box by device id or device name (a name must be unique)."""
    views = devices(bucket)
    by_id = [v for v in views if v.device_id == name]
    if by_id:
        return by_id[0]
    by_name = [v for v in views if v.name == name]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        ids = ", ".join(v.device_id for v in by_name)
        raise FleetError(f"{name!r} names several devices ({ids}): use the device id")
    raise FleetError(f"no device {name!r} in the bucket (see `radiant fleet list`)")


def set_desired(
    bucket: FleetBucket, key: Ed25519PrivateKey, name: str, assignments: dict[str, Any]
) -> dict[str, Any]:
    """Write the box's next desired.json: the previous settings (when signed by this key) with
    ``assignments``, serial one above the highest the fleet or the box has seen."""
    view = find(bucket, name)
    public = key.public_key()
    previous: dict[str, Any] = {}
    serial = 0
    if view.desired is not None:
        prev_serial = view.desired.get("serial")
        if isinstance(prev_serial, int) and not isinstance(prev_serial, bool):
            serial = prev_serial
        try:
            signing.verify(view.desired, public)
            values = view.desired.get("settings")
            previous = values if isinstance(values, dict) else {}
        except signing.SignatureError:
            previous = {}  # not ours (or altered): start from the assignments only
    state = (view.status or {}).get("desired_state") or {}
    for seen in (state.get("applied_serial"), state.get("serial")):
        if isinstance(seen, int) and not isinstance(seen, bool):
            serial = max(serial, seen)
    document = desired.build(view.device_id, serial + 1, {**previous, **assignments}, now_iso())
    signed = signing.sign(document, key)
    bucket.put_json(view.device_id, DESIRED_DOC, signed)
    return signed
