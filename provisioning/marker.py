"""The box's provisioning marker (``<data_dir>/provisioned.json``: device, who, when, fleet key)
and its registration in the fleet bucket (``fleet/devices/<id>/device.json``, signed by the
box's own key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.config import Settings
from appliance.db.rows import now_iso
from provisioning import device, signing
from provisioning.bucket import DEVICE_DOC, for_box

MARKER_FILE = "provisioned.json"


def marker_path(settings: Settings) -> Path:
    return settings.data_dir / MARKER_FILE


def is_provisioned(settings: Settings) -> bool:
    """True once ``radiant provision`` (or the first-boot screen) has completed on this box."""
    return marker_path(settings).is_file()


def device_document(settings: Settings, device_name: str | None) -> dict[str, Any]:
    """``device.json``: who the box is, signed by its own key."""
    key = device.ensure_device_key(settings)
    ident = device.identity(settings)
    body = {
        "format": "radiant-device/1",
        "device_id": ident.device_id,
        "device_name": device_name,
        "site_name": settings.site_name,
        "public_key": ident.public_key,
        "registered_at": now_iso(),
        "version": __version__,
    }
    return signing.sign(body, key)


def register(settings: Settings, device_name: str | None = None) -> None:
    """Write ``fleet/devices/<id>/device.json`` to the bucket (RcloneError when it fails)."""
    name = device_name
    if name is None:
        name = read_marker(settings).get("device_name")
    document = device_document(settings, name)
    for_box(settings).put_json(document["device_id"], DEVICE_DOC, document)


def read_marker(settings: Settings) -> dict[str, Any]:
    try:
        value = json.loads(marker_path(settings).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
