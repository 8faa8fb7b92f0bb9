"""The one comparison of the object store and the index, shared by ``radiant fsck`` and
start-up recovery: every ``instances`` row against the files under the store's ``dicom/``
(Orthanc's habit: an instance is acknowledged only once both are written, so any difference is
a crash mid-ingest or damage), and setting aside a file no row names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlite_utils

from appliance.audit.models import Actor
from appliance.storage.service import DICOM_PREFIX, ObjectStore, UnsafeKey

if TYPE_CHECKING:
    from appliance.context import AppContext  # the container only: no runtime import


@dataclass(frozen=True)
class IndexedFile:
    """One key seen in the index, on disk, or both.

    ``instance_id`` is None for a file no row names (not indexed); ``on_disk`` is False for a
    row whose file is absent. ``local`` is the row's ``storage_state == 'local'``.
    """

    key: str
    on_disk: bool
    instance_id: str | None = None
    size: int | None = None
    sha256: str | None = None
    local: bool = False


def walk_index(db: sqlite_utils.Database, store: ObjectStore) -> Iterator[IndexedFile]:
    """Merge the ``instances`` rows and the files under ``dicom/``, both in key order.

    Streams both sides (no key set in memory). SQLite orders TEXT bytewise and
    :meth:`ObjectStore.iter_keys` by code point, which agree for UTF-8. Do not write to ``db``
    while iterating: collect first, then act.
    """
    rows = db.execute(
        "SELECT storage_key, id, size, sha256, storage_state FROM instances ORDER BY storage_key"
    )
    files = store.iter_keys(DICOM_PREFIX + "/")
    row = next(rows, None)
    key = next(files, None)
    while row is not None or key is not None:
        if key is not None and (row is None or key < row[0]):
            yield IndexedFile(key, on_disk=True)
            key = next(files, None)
            continue
        assert row is not None
        row_key = str(row[0])
        if key is None or row_key < key:
            # Not among the dicom/ files: absent, unless it lives outside dicom/.
            on_disk = not row_key.startswith(DICOM_PREFIX + "/") and _exists(store, row_key)
        else:
            on_disk = True
        yield IndexedFile(
            row_key, on_disk, str(row[1]), int(row[2]), str(row[3]), row[4] == "local"
        )
        row = next(rows, None)
        # Several rows may name one key: keep the file until the last of them.
        if on_disk and key == row_key and (row is None or row[0] != key):
            key = next(files, None)


def unindexed_keys(db: sqlite_utils.Database, store: ObjectStore) -> list[str]:
    """Keys of the files under ``dicom/`` that no ``instances`` row names."""
    return [f.key for f in walk_index(db, store) if f.instance_id is None]


def quarantine_orphan(
    ctx: AppContext,
    db: sqlite_utils.Database,
    key: str,
    *,
    reason: str,
    source: str,
    actor: Actor,
) -> str:
    """Move the unindexed file ``key`` into quarantine (kept byte for byte with ``reason``) and
    delete it from the store; returns the quarantine id."""
    with ctx.store.open(key) as stream:
        data = stream.read()
    qid = ctx.quarantine.keep(
        db, data, reason=reason, source=source, origin=None, sop_instance_uid=None, actor=actor
    )
    ctx.store.delete(key)
    return qid


def _exists(store: ObjectStore, key: str) -> bool:
    try:
        return store.exists(key)
    except UnsafeKey:
        return False
