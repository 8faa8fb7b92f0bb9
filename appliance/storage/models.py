"""Types of the local object store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object as written or re-read: its key, size in bytes and SHA-256 (lowercase hex)."""

    key: str
    size: int
    sha256: str
