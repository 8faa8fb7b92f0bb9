"""The fleet's meeting point in the hospital's bucket, reached with rclone (the same binary and
remote settings as replication: ``RADIANT_SYNC_*``).

Layout, at the bucket's root (not under a box's sync prefix)::

    fleet/devices/<device-id>/device.json    the box's id, name and public key (enrollment)
    fleet/devices/<device-id>/status.json    the box's signed status, rewritten every interval
    fleet/devices/<device-id>/desired.json   the fleet's signed settings for the box

Objects are small JSON documents written whole (``rclone rcat``: one PUT) and read whole
(``rclone cat``). The rclone config is generated into its own file (``<dir>/rclone.conf``, 0600)
so it never races with the sync worker's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import Settings
from sync import layout
from sync.probe import ProbeResult, probe
from sync.rclone import STORE, Rclone, RcloneError, config_text

FLEET_PREFIX = "fleet/devices"
DEVICE_DOC = "device.json"
STATUS_DOC = "status.json"
DESIRED_DOC = "desired.json"


class DocumentError(Exception):
    """An object in the bucket is not a JSON object."""


@dataclass
class FleetBucket(Rclone):
    """rclone on ``store:<bucket>/fleet/devices`` with a config file in ``config_dir``."""

    config_dir: Path = Path()

    @property
    def config(self) -> Path:
        return self.config_dir / "rclone.conf"

    @property
    def bucket_root(self) -> str:
        return f"{STORE}:{self.settings.sync_bucket}/{FLEET_PREFIX}"

    def prepare(self) -> FleetBucket:
        """Write the rclone config (the ``store`` remote of the settings; nothing encrypted)."""
        self.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        layout.write_private(self.config, config_text(self.settings, "fleet", None))
        return self

    def check(self) -> ProbeResult:
        """Can the bucket be listed with these settings? (see :func:`sync.probe.probe`)"""
        return probe(self.settings, self)

    def object(self, device_id: str, name: str) -> str:
        return f"{self.bucket_root}/{device_id}/{name}"

    def put_json(self, device_id: str, name: str, document: dict[str, Any]) -> None:
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        self.run("rcat", self.object(device_id, name), stdin=text, timeout=120)

    def get_json(self, device_id: str, name: str) -> dict[str, Any] | None:
        """The document, None when there is none (rclone cat prints nothing for a missing
        object); DocumentError when it is not a JSON object."""
        result = self.run("cat", self.object(device_id, name), timeout=120)
        return parse_document(result.stdout, f"{device_id}/{name}")

    def fetch_all(self, dest: Path) -> dict[str, dict[str, str]]:
        """Copy every device's JSON documents to ``dest`` in one rclone call; returns
        {device id: {document name: text}}."""
        result = self.run(
            "copy",
            self.bucket_root,
            str(dest),
            "--include",
            f"/*/{{{DEVICE_DOC},{STATUS_DOC},{DESIRED_DOC}}}",
            timeout=600,
            check=False,
        )
        if result.returncode not in (0, 3):  # 3: no fleet folder yet
            raise RcloneError("copy", result.returncode, result.stderr.strip()[-300:])
        found: dict[str, dict[str, str]] = {}
        for path in sorted(dest.glob("*/*.json")):
            found.setdefault(path.parent.name, {})[path.name] = path.read_text("utf-8")
        return found


def parse_document(text: str, where: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise DocumentError(f"{where} is not JSON") from None
    if not isinstance(value, dict):
        raise DocumentError(f"{where} is not a JSON object")
    return value


def for_box(settings: Settings) -> FleetBucket:
    """The box's view: config in ``<data_dir>/fleet``."""
    return FleetBucket(settings, settings.data_dir / "fleet").prepare()
