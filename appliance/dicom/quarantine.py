"""The quarantine: files refused by ingest, kept byte for byte for a person to inspect.

Each file has a ``quarantine`` row (reason, source, origin, size, SHA-256). The same bytes sent
again (same SHA-256: a sender retrying a bad file) are kept once: the row's ``seen_count`` goes
up and ``last_seen_at`` moves, and the repeat is audited. The quarantine is bounded by a size
and a count quota (``RADIANT_QUARANTINE_MAX_MB``, ``RADIANT_QUARANTINE_MAX_FILES``): when a new
file takes it beyond either, the files seen longest ago are evicted first, each eviction
audited (``dicom.quarantine.evict``) with the file's id, size and hash. A file that alone
exceeds the size quota is evicted as well: the quota holds, the audit row tells.

Eviction order on disk: the row and its audit row are committed first, then the file is
removed; a crash in between leaves a file without a row, which ``radiant fsck`` reports.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import new_id, now_iso
from radiant_common.durable import write_new

DEFAULT_MAX_BYTES = 1024 << 20
DEFAULT_MAX_FILES = 10_000


@dataclass(frozen=True)
class Quota:
    """The most the quarantine keeps: bytes of files and number of files."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES


class Quarantine:
    """Files refused by ingest, kept byte for byte under ``root`` with a ``quarantine`` row."""

    def __init__(self, root: Path, quota: Quota | None = None) -> None:
        self.root = root
        self.quota = quota or Quota()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # one keeper at a time in this process: a repeat must see the first copy's row
        self._lock = threading.Lock()

    def keep(
        self,
        db: sqlite_utils.Database,
        data: bytes,
        *,
        reason: str,
        source: str,
        origin: str | None,
        sop_instance_uid: str | None,
        actor: Actor,
    ) -> str:
        """Keep ``data`` with ``reason``; returns the quarantine id (that of the first copy when
        the same bytes are already kept)."""
        sha256 = hashlib.sha256(data).hexdigest()
        with self._lock:
            repeat = self._seen_again(db, sha256, source, reason, actor)
            if repeat is not None:
                return repeat
            qid = new_id()
            folder = self.root / now_iso()[:10]
            path = _write(folder, f"{qid}.dcm", data)
            with transaction(db):
                # another process may have kept the same bytes meanwhile
                repeat = self._seen_again(db, sha256, source, reason, actor)
                if repeat is None:
                    _insert(
                        db,
                        qid,
                        path.relative_to(self.root),
                        len(data),
                        sha256,
                        source=source,
                        origin=origin,
                        reason=reason,
                        sop_instance_uid=sop_instance_uid,
                    )
                    audit.record(
                        db,
                        actor,
                        "dicom.quarantine",
                        object_type="quarantine",
                        object_id=qid,
                        outcome="refused",
                        detail={"source": source, "reason": reason},
                    )
            if repeat is not None:
                path.unlink(missing_ok=True)
                return repeat
            self.enforce(db, actor)
        return qid

    def _seen_again(
        self, db: sqlite_utils.Database, sha256: str, source: str, reason: str, actor: Actor
    ) -> str | None:
        """Count a repeat of already kept bytes; the kept copy's id, or None when new."""
        with transaction(db):
            row = db.execute(
                "SELECT id, seen_count FROM quarantine WHERE sha256 = ? ORDER BY received_at"
                " LIMIT 1",
                (sha256,),
            ).fetchone()
            if row is None:
                return None
            qid, seen = str(row[0]), int(row[1]) + 1
            db.execute(
                "UPDATE quarantine SET seen_count = ?, last_seen_at = ? WHERE id = ?",
                (seen, now_iso(), qid),
            )
            audit.record(
                db,
                actor,
                "dicom.quarantine",
                object_type="quarantine",
                object_id=qid,
                outcome="refused",
                detail={"source": source, "reason": reason, "repeat": True, "seen_count": seen},
            )
        return qid

    def enforce(self, db: sqlite_utils.Database, actor: Actor) -> list[str]:
        """Evict the files seen longest ago until the quarantine is within its quota; returns
        the evicted ids."""
        evicted: list[tuple[str, str]] = []
        with transaction(db):
            count, total = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM quarantine"
            ).fetchone()
            while count > self.quota.max_files or total > self.quota.max_bytes:
                # every row has last_seen_at (set on insert; migration 0012 for older rows)
                row = db.execute(
                    "SELECT id, storage_path, size, sha256 FROM quarantine"
                    " ORDER BY last_seen_at, received_at, id LIMIT 1"
                ).fetchone()
                if row is None:
                    break
                qid, storage_path, size, sha256 = row
                db.execute("DELETE FROM quarantine WHERE id = ?", (qid,))
                audit.record(
                    db,
                    actor,
                    "dicom.quarantine.evict",
                    object_type="quarantine",
                    object_id=qid,
                    detail={
                        "reason": "quota",
                        "size": size,
                        "sha256": sha256,
                        "max_mb": self.quota.max_bytes >> 20,
                        "max_files": self.quota.max_files,
                    },
                )
                count, total = count - 1, total - size
                evicted.append((qid, storage_path))
        for _, storage_path in evicted:
            (self.root / storage_path).unlink(missing_ok=True)
        return [qid for qid, _ in evicted]


def _insert(
    db: sqlite_utils.Database,
    qid: str,
    storage_path: Path,
    size: int,
    sha256: str,
    *,
    source: str,
    origin: str | None,
    reason: str,
    sop_instance_uid: str | None,
) -> None:
    now = now_iso()
    db.execute(
        "INSERT INTO quarantine (id, received_at, last_seen_at, seen_count, source, origin,"
        " reason, sop_instance_uid, storage_path, size, sha256)"
        " VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
        (qid, now, now, source, origin, reason, sop_instance_uid, str(storage_path), size, sha256),
    )


def _write(folder: Path, name: str, data: bytes) -> Path:
    """Create ``folder/name`` with ``data``, fsynced with its directory."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    write_new(path, data)
    return path
