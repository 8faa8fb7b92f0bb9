"""The files of indexed DICOM instances: where to read one, and eviction to the bucket.

An instance row's ``storage_state`` says where its file is: ``local`` (under the object store)
or ``remote`` (evicted: only the bucket holds it). This module is the only writer of that
column after ingest:

- :func:`instance_path` is how every reader (file download, viewer, volume build, analysis,
  DICOMweb, C-GET/C-MOVE, exports) finds an instance's file. An evicted file is fetched back
  first through the store's injected :class:`~appliance.storage.models.FetchBack`, checked
  against the size and SHA-256 in its index row, stored durably and its row marked ``local``
  (audited ``sync.fetch``). When it cannot be, a clear error says why: :class:`NotKeptHere`
  (409: no bucket, or offline) or :class:`FileUnavailable` (503: bucket unreachable, or its
  copy does not match).
- :func:`evict` switches rows to ``remote`` (first, in one transaction, audited ``sync.evict``)
  and then removes their files, so a crash in between leaves a redundant file, never a row
  without its file. Which instances qualify is the sync layer's policy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import fetch_one
from appliance.logs import get_logger
from appliance.storage.models import DigestMismatch, FileUnavailable, NotKeptHere
from appliance.storage.service import ObjectStore

log = get_logger("radiant.storage.instances")
ACTOR = Actor.system("sync")
NOT_KEPT = "the file of this instance is not kept on this appliance (evicted to the bucket)"
_LOCKS = tuple(threading.Lock() for _ in range(16))


@dataclass(frozen=True, slots=True)
class Evictable:
    """An instance file the sync layer found verified in the bucket: evicted only if its row
    still names this key and hash (a file replaced since is kept)."""

    instance_id: str
    storage_key: str
    sha256: str
    size: int


def instance_path(db: sqlite_utils.Database, store: ObjectStore, key: str) -> Path:
    """Path of the instance file stored as ``key``, fetched back from the bucket first when
    the instance is evicted (see the module docstring for the errors).

    A file on disk is returned at once. A missing file whose row is ``local`` (or that no row
    names) is returned as is: the caller reports it missing (``radiant fsck``).
    """
    path = store.path(key)
    if path.is_file():
        return path
    row = _row(db, key)
    if row is None or row["storage_state"] != "remote":
        return path
    with _LOCKS[hash(key) % len(_LOCKS)]:
        row = _row(db, key)  # another reader may have fetched it meanwhile
        if row is None or row["storage_state"] != "remote":
            return path
        _fetch_back(db, store, key, row)
    return path


def _row(db: sqlite_utils.Database, key: str) -> dict[str, object] | None:
    return fetch_one(
        db,
        "SELECT id, size, sha256, storage_state FROM instances WHERE storage_key = ?"
        " ORDER BY storage_state = 'local' DESC LIMIT 1",
        (key,),
    )


def _fetch_back(
    db: sqlite_utils.Database, store: ObjectStore, key: str, row: dict[str, object]
) -> None:
    instance_id, size, sha256 = str(row["id"]), int(str(row["size"])), str(row["sha256"])
    if store.fetch_back is None:
        raise NotKeptHere(f"{NOT_KEPT}, and this process has no connection to the bucket")
    try:
        store.put_fetched(key, store.fetch_back, size=size, sha256=sha256)
    except DigestMismatch:
        log.warning("fetch_mismatch", instance_id=instance_id)
        raise FileUnavailable(
            f"{NOT_KEPT}, and the bucket's copy does not match its index entry (size or "
            "SHA-256): it was not restored; check the bucket"
        ) from None
    except OSError as exc:
        log.warning("fetch_failed", instance_id=instance_id, error=type(exc).__name__)
        raise FileUnavailable(f"{NOT_KEPT}, and it could not be written back here") from None
    with transaction(db):
        db.execute(
            "UPDATE instances SET storage_state = 'local'"
            " WHERE id = ? AND storage_state = 'remote'",
            (instance_id,),
        )
        audit.record(
            db, ACTOR, "sync.fetch", object_type="instance", object_id=instance_id,
            detail={"size": size},
        )
    log.info("fetched", instance_id=instance_id)


def evict(
    db: sqlite_utils.Database,
    store: ObjectStore,
    study_id: str,
    files: list[Evictable],
    actor: Actor = ACTOR,
) -> list[Evictable]:
    """Evict ``files`` of one study (see the module docstring); returns those evicted."""
    evicted: list[Evictable] = []
    with transaction(db):
        for item in files:
            changed = db.execute(
                "UPDATE instances SET storage_state = 'remote' WHERE id = ?"
                " AND storage_state = 'local' AND storage_key = ? AND sha256 = ?",
                (item.instance_id, item.storage_key, item.sha256),
            ).rowcount
            if changed:
                evicted.append(item)
        if evicted:
            audit.record(
                db, actor, "sync.evict", object_type="study", object_id=study_id,
                detail={"instances": len(evicted), "bytes": sum(i.size for i in evicted)},
            )
    for item in evicted:
        store.delete(item.storage_key, missing_ok=True)
    return evicted
