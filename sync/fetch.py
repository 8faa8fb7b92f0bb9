"""The fetch-back the storage layer uses for evicted files: rclone from the bucket, when a
bucket is configured and the appliance is online.

Storage (:mod:`appliance.storage.instances`) checks the copy against its index row, stores it
durably and marks the row local; this module only copies. The composition root attaches it
with :func:`attach`.
"""

from __future__ import annotations

from pathlib import Path

from appliance.config import Mode, Settings
from appliance.db.connection import ConnectionPool
from appliance.logs import get_logger
from appliance.storage.instances import NOT_KEPT
from appliance.storage.models import FileUnavailable, NotKeptHere
from appliance.storage.service import ObjectStore
from sync import layout
from sync import rclone as rclone_config
from sync.mode import effective_mode
from sync.rclone import Rclone, RcloneError

log = get_logger("radiant.sync.fetch")


class BucketFetchBack:
    """:class:`~appliance.storage.models.FetchBack` through rclone (the crypt remote when
    ``RADIANT_SYNC_ENCRYPT``). Settings are read at each call (a desired-state change of mode
    or remote applies at once)."""

    def __init__(self, settings: Settings, pool: ConnectionPool) -> None:
        self.settings = settings
        self.pool = pool

    def __call__(self, key: str, dest: Path) -> None:
        settings = self.settings
        if not settings.sync_remote:
            raise NotKeptHere(f"{NOT_KEPT}, and no bucket is configured to fetch it back from")
        if effective_mode(self.pool.get(), settings) is not Mode.ONLINE:
            raise NotKeptHere(
                f"{NOT_KEPT}, and the appliance is offline: switch it online to fetch it back"
            )
        try:
            if not layout.rclone_config(settings).exists():
                rclone_config.write_config(settings)
            Rclone(settings).fetch_for_reader(layout.object_key(key), dest)
        except (RcloneError, OSError) as exc:
            log.warning("fetch_failed", error=str(exc)[-300:])
            raise FileUnavailable(
                f"{NOT_KEPT}, and the bucket could not be reached to fetch it back; "
                "try again later"
            ) from None


def attach(store: ObjectStore, settings: Settings, pool: ConnectionPool) -> None:
    """Give ``store`` the bucket fetch-back (composition time)."""
    store.fetch_back = BucketFetchBack(settings, pool)
