"""Releases in the fleet's bucket, next to the devices (same rclone remote and credentials)::

    fleet/releases/<channel>/<version>/release.json, wheels/*.whl   a bundle, as built
    fleet/releases/<channel>/channel.json   {"format": "radiant-channel/1", "channel": ...,
                                             "version": ..., "release_sha256": ..., signature}

Publishing uploads the bundle first and rewrites ``channel.json`` last, so a box never sees a
channel naming a release that is not complete in the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config import Settings
from appliance.db.rows import now_iso
from provisioning import signing
from provisioning.bucket import FleetBucket
from provisioning.update.release import Release, verify
from sync.rclone import STORE

RELEASES_PREFIX = "fleet/releases"
CHANNEL_DOC = "channel.json"
CHANNEL_FORMAT = "radiant-channel/1"


@dataclass
class ReleaseBucket(FleetBucket):
    """rclone on ``store:<bucket>/fleet/releases``."""

    @property
    def bucket_root(self) -> str:
        return f"{STORE}:{self.settings.sync_bucket}/{RELEASES_PREFIX}"

    def channel(self, channel: str) -> dict[str, Any] | None:
        return self.get_json(channel, CHANNEL_DOC)

    def fetch_release(self, channel: str, version: str, dest: Path) -> None:
        self.run("copy", f"{self.bucket_root}/{channel}/{version}", str(dest), timeout=3600)

    def publish(self, bundle: Path, key: Ed25519PrivateKey) -> tuple[Release, dict[str, Any]]:
        """Upload a bundle (verified with the key first) and point its channel at it."""
        release = verify(bundle, key.public_key())
        self.run(
            "copy",
            str(bundle),
            f"{self.bucket_root}/{release.channel}/{release.version}",
            timeout=3600,
        )
        document = signing.sign(
            {
                "format": CHANNEL_FORMAT,
                "channel": release.channel,
                "version": release.version,
                "release_sha256": release.sha256,
                "issued_at": now_iso(),
            },
            key,
        )
        self.put_json(release.channel, CHANNEL_DOC, document)
        return release, document


def for_box(settings: Settings) -> ReleaseBucket:
    """The updater's view: its own rclone config in ``<data_dir>/update/rclone`` (the updater
    runs as root; the fleet agent's config stays the appliance's)."""
    bucket = ReleaseBucket(settings, settings.data_dir / "update" / "rclone")
    bucket.prepare()
    return bucket
