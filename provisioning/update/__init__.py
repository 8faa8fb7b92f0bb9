"""Signed software releases, app slots and the updater with automatic rollback."""
