"""Sending report objects to a PACS with DICOM C-STORE (PS3.4 B, PS3.7 9.1.1) and retrying.

A send is a ``sync_queue`` row (``object_type = 'pacs_send'``) whose ``payload`` names the
report version, the peer's AE title and the stored objects (Part 10 files kept in the object
store under ``exports/pacs/<send id>/`` until delivered). :func:`attempt` tries one send; on a
failure the row goes back to ``pending`` with ``last_error``, ``attempts`` and a
``next_attempt_at`` after exponential back-off; :class:`PacsRetrier` (started in the app's
lifespan) retries due rows. A row becomes ``failed`` only when retrying cannot help (the peer
was removed from RADIANT_DICOM_PEERS, or it refuses the SOP class). Every attempt is audited
(``export.pacs_send``) with ids only.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pydicom
import sqlite_utils
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import Peer, Settings
from appliance.db.connection import ConnectionPool, transaction
from appliance.db.rows import iso, new_id, now_iso, utc_now
from appliance.logs import get_logger
from appliance.storage.service import ObjectStore

log = get_logger("radiant.pacs")
OBJECT_TYPE = "pacs_send"
KEY_PREFIX = "exports/pacs"
RETRY_ACTOR = Actor.system("pacs-retry")


@dataclass
class StoreResult:
    """Outcome of one association: per-instance C-STORE statuses, or why it failed."""

    ok: bool
    statuses: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    permanent: bool = False


def c_store(
    peer: Peer, calling_ae: str, datasets: Sequence[Dataset], timeout_s: float
) -> StoreResult:
    """Send ``datasets`` to ``peer`` in one association (explicit, then implicit VR LE)."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    for sop_class in dict.fromkeys(str(ds.SOPClassUID) for ds in datasets):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        if assoc.is_rejected:
            reason = "association rejected"
        elif assoc.is_aborted:
            reason = "association aborted"
        else:
            reason = "no association (peer unreachable or not answering)"
        return StoreResult(False, error=f"{reason}: {peer.ae_title}@{peer.host}:{peer.port}")
    result = StoreResult(True)
    try:
        for ds in datasets:
            uid = str(ds.SOPInstanceUID)
            try:
                status = assoc.send_c_store(ds)
            except ValueError as exc:  # no accepted presentation context for the SOP class
                return StoreResult(False, result.statuses, str(exc)[:300], permanent=True)
            code = int(getattr(status, "Status", -1)) if status else -1
            result.statuses[uid] = code
            # 0x0000 success; 0xB000, 0xB007, 0xB006 warnings (stored) - PS3.4 Table B.2-1.
            if code not in (0x0000, 0xB000, 0xB006, 0xB007):
                result.ok = False
                result.error = (
                    f"C-STORE of {uid} failed with status 0x{code:04X}"
                    if code >= 0
                    else f"no C-STORE response for {uid} (connection lost or timed out)"
                )
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return result


@dataclass(frozen=True)
class QueuedSend:
    id: int
    send_id: str
    status: str
    attempts: int
    last_error: str | None
    payload: dict[str, Any]


def _row(db: sqlite_utils.Database, queue_id: int) -> QueuedSend:
    values = db.execute(
        "SELECT id, object_key, status, attempts, last_error, payload FROM sync_queue WHERE id = ?",
        (queue_id,),
    ).fetchone()
    if values is None:
        raise LookupError(f"sync_queue row {queue_id} not found")
    return QueuedSend(
        id=int(values[0]),
        send_id=str(values[1]).rsplit("/", 1)[-1],
        status=str(values[2]),
        attempts=int(values[3]),
        last_error=values[4],
        payload=json.loads(values[5] or "{}"),
    )


def enqueue(
    db: sqlite_utils.Database,
    store: ObjectStore,
    objects: dict[str, bytes],
    payload: dict[str, Any],
    actor: Actor,
) -> int:
    """Store the objects (fsynced) and add a ``pacs_send`` row in state ``uploading`` for the
    caller's immediate attempt; returns the row id."""
    send_id = new_id()
    keys: dict[str, str] = {}
    size = 0
    digests: list[str] = []
    for name, data in objects.items():
        key = f"{KEY_PREFIX}/{send_id}/{name}.dcm"
        stored = store.put(key, data)
        keys[name] = key
        size += stored.size
        digests.append(stored.sha256)
    now = now_iso()
    with transaction(db):
        cursor = db.execute(
            "INSERT INTO sync_queue (object_type, object_key, size, sha256, status, attempts,"
            " created_at, updated_at, payload, next_attempt_at)"
            " VALUES (?, ?, ?, ?, 'uploading', 0, ?, ?, ?, ?)",
            (
                OBJECT_TYPE,
                f"{OBJECT_TYPE}/{send_id}",
                size,
                digests[0] if digests else None,
                now,
                now,
                json.dumps({**payload, "keys": keys}, sort_keys=True),
                now,
            ),
        )
        queue_id = int(cursor.lastrowid or 0)
        audit.record(
            db,
            actor,
            "export.pacs_queue",
            object_type="report",
            object_id=str(payload.get("report_id")),
            detail={"queue_id": queue_id, "peer": payload.get("peer")},
        )
    return queue_id


def backoff_s(attempts: int, settings: Settings) -> float:
    """Seconds before the next try after ``attempts`` failures: base x 2^(n-1), capped."""
    return float(
        min(settings.pacs_retry_base_s * 2 ** max(attempts - 1, 0), settings.pacs_retry_max_s)
    )


def attempt(
    db: sqlite_utils.Database,
    store: ObjectStore,
    settings: Settings,
    queue_id: int,
    actor: Actor,
) -> QueuedSend:
    """Try the send of row ``queue_id`` once (the row must be ``uploading``) and record it."""
    row = _row(db, queue_id)
    peer = settings.peers.get(str(row.payload.get("peer")))
    result: StoreResult
    if peer is None:
        result = StoreResult(
            False, error="the peer is no longer configured (RADIANT_DICOM_PEERS)", permanent=True
        )
    else:
        try:
            datasets = []
            for key in row.payload.get("keys", {}).values():
                with store.open(key) as stream:
                    datasets.append(pydicom.dcmread(io.BytesIO(stream.read())))
        except (OSError, ValueError) as exc:
            result = StoreResult(
                False, error=f"stored objects unreadable: {exc}"[:300], permanent=True
            )
        else:
            try:
                result = c_store(peer, settings.dicom_ae_title, datasets, settings.pacs_timeout_s)
            except (OSError, RuntimeError) as exc:
                result = StoreResult(False, error=f"{type(exc).__name__}: {exc}"[:300])
    attempts = row.attempts + 1
    now = utc_now()
    if result.ok:
        status, next_at, error = "done", None, None
    elif result.permanent:
        status, next_at, error = "failed", None, result.error
    else:
        status = "pending"
        next_at = iso(now + timedelta(seconds=backoff_s(attempts, settings)))
        error = result.error
    with transaction(db):
        db.execute(
            "UPDATE sync_queue SET status = ?, attempts = ?, last_error = ?, updated_at = ?,"
            " next_attempt_at = ?, done_at = ? WHERE id = ?",
            (
                status,
                attempts,
                error,
                iso(now),
                next_at,
                iso(now) if status == "done" else None,
                queue_id,
            ),
        )
        audit.record(
            db,
            actor,
            "export.pacs_send",
            object_type="report",
            object_id=str(row.payload.get("report_id")),
            outcome={"done": "success", "pending": "queued", "failed": "failed"}[status],
            detail={
                "queue_id": queue_id,
                "peer": row.payload.get("peer"),
                "version": row.payload.get("version"),
                "attempts": attempts,
                "statuses": result.statuses,
            },
        )
    if status == "done":
        for key in row.payload.get("keys", {}).values():
            store.delete(key, missing_ok=True)
    log.info("pacs_send", queue_id=queue_id, status=status, attempts=attempts)
    return _row(db, queue_id)


def _claim_due(db: sqlite_utils.Database, limit: int = 20) -> list[int]:
    now = now_iso()
    with transaction(db):
        ids = [
            int(r[0])
            for r in db.execute(
                "SELECT id FROM sync_queue WHERE object_type = ? AND status = 'pending'"
                " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
                (OBJECT_TYPE, now, limit),
            )
        ]
        for queue_id in ids:
            db.execute(
                "UPDATE sync_queue SET status = 'uploading', updated_at = ? WHERE id = ?",
                (now, queue_id),
            )
    return ids


def recover(db: sqlite_utils.Database) -> int:
    """Sends left ``uploading`` by a crash go back to ``pending`` (retried at once)."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE sync_queue SET status = 'pending', next_attempt_at = ?"
            " WHERE object_type = ? AND status = 'uploading'",
            (now_iso(), OBJECT_TYPE),
        )
    return int(cursor.rowcount or 0)


class PacsRetrier:
    """Background thread retrying due PACS sends every ``RADIANT_PACS_RETRY_POLL_S``."""

    def __init__(self, pool: ConnectionPool, store: ObjectStore, settings: Settings) -> None:
        self.pool = pool
        self.store = store
        self.settings = settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Retry every due send once; returns how many were tried."""
        db = self.pool.get()
        ids = _claim_due(db)
        for queue_id in ids:
            if self._stop.is_set():
                break
            attempt(db, self.store, self.settings, queue_id, RETRY_ACTOR)
        return len(ids)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        recover(self.pool.get())
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # keep retrying; the error is logged without PHI
                log.exception("pacs_retry_failed")
            self._wake.wait(self.settings.pacs_retry_poll_s)
            self._wake.clear()
        self.pool.release()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pacs-retry", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.pacs_timeout_s + 5)
            self._thread = None
