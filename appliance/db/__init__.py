"""SQLite store: connections (WAL, synchronous=FULL, foreign keys) and numbered migrations."""

from appliance.db.connection import ConnectionPool, open_database, transaction
from appliance.db.migrate import MigrationError, apply_migrations, schema_version

__all__ = [
    "ConnectionPool",
    "MigrationError",
    "apply_migrations",
    "open_database",
    "schema_version",
    "transaction",
]
