"""The appliance's long-lived parts, built once per process and shared by HTTP routes, the DICOM
receiver, media import and the command line: settings, database pool, object store, ingest and
derived keys. :func:`prepare` makes them; it needs neither FastAPI nor NiceGUI, so a command that
only reads or writes the database (``radiant fsck``, ``radiant audit verify``) loads none of the
web stack. The running services on top of it are built by :mod:`appliance.bootstrap`."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import Settings, ensure_secret_key, prepare_data_dir
from appliance.db.connection import ConnectionPool
from appliance.db.migrate import apply_migrations
from appliance.dicom.ingest import Ingestor
from appliance.dicom.quarantine import Quarantine, Quota
from appliance.keys import DerivedKeys
from appliance.logs import get_logger
from appliance.storage.service import ObjectStore

log = get_logger("radiant.context")


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
        quota = Quota(settings.quarantine_max_mb << 20, settings.quarantine_max_files)
        quarantine = Quarantine(settings.quarantine_dir, quota)
        ingestor = Ingestor(pool, store, quarantine, overwrite=settings.dicom_overwrite)
        keys = DerivedKeys.from_secret(secret_key)
        return cls(settings, pool, secret_key, store, quarantine, ingestor, keys)


def prepare(settings: Settings) -> AppContext:
    """Data dir, secret key, schema and stores: everything that must hold before serving or
    before a command touches the data."""
    prepare_data_dir(settings)
    secret = ensure_secret_key(settings)
    pool = ConnectionPool(settings.db_path, settings.db_busy_timeout_ms)
    if settings.db_migrate_at_start:
        applied = apply_migrations(pool.get())
        if applied:
            log.info("migrations_applied", versions=applied)
    else:
        log.info("migrations_held", reason="RADIANT_DB_MIGRATE_AT_START=false")
    return AppContext.build(settings, pool, secret)
