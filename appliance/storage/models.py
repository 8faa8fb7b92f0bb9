"""Types of the local object store: stored objects, the injected fetch-back and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.errors import AppError


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object as written or re-read: its key, size in bytes and SHA-256 (lowercase hex)."""

    key: str
    size: int
    sha256: str


class FetchBack(Protocol):
    """Copies the bucket's copy of an evicted object back; provided by the sync layer when the
    services are composed (storage sits below sync and does not import it).

    ``fetch(key, dest)`` writes the object ``key`` (an object-store key) to the local file
    ``dest`` (which it may create or replace). It raises :class:`NotKeptHere` when the bucket
    may not be used now (no bucket configured, appliance offline) and
    :class:`FileUnavailable` when the copy failed (bucket unreachable, object absent).
    """

    def __call__(self, key: str, dest: Path) -> None: ...


class FileUnavailable(AppError):
    """An evicted file that could not be fetched back now (503: worth another try)."""

    status = 503
    title = "File not available"


class NotKeptHere(FileUnavailable):
    """An evicted file while the bucket may not be used (no bucket, or offline): a 409, the
    state of the appliance conflicts with the request."""

    status = 409
    title = "Conflict"


class DigestMismatch(ValueError):
    """Fetched bytes whose size or SHA-256 differ from the ones expected."""
