"""The appliance's long-lived parts, built once per process and shared by HTTP routes, the DICOM
receiver, media import and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import Settings
from appliance.db.connection import ConnectionPool
from appliance.dicom.ingest import Ingestor, Quarantine
from appliance.keys import DerivedKeys
from appliance.storage.service import ObjectStore


@dataclass
class AppContext:
    settings: Settings
    pool: ConnectionPool
    secret_key: str
    store: ObjectStore
    quarantine: Quarantine
    ingestor: Ingestor
    keys: DerivedKeys

    @classmethod
    def build(cls, settings: Settings, pool: ConnectionPool, secret_key: str) -> AppContext:
        store = ObjectStore(settings.objects_dir)
        quarantine = Quarantine(settings.quarantine_dir)
        ingestor = Ingestor(pool, store, quarantine, overwrite=settings.dicom_overwrite)
        keys = DerivedKeys.from_secret(secret_key)
        return cls(settings, pool, secret_key, store, quarantine, ingestor, keys)
