"""The sync status for ``GET /api/sync/status`` and ``radiant sync status``.

It is built from the queue table, the state file the sync manager rewrites every round
(``<data_dir>/sync/state.json``: probe outcome, Litestream's pid, last snapshot, last error) and,
live, Litestream's control socket, so the command line sees what the running appliance sees.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from appliance.config import Mode, Settings
from appliance.db.rows import iso
from sync import layout, litestream
from sync import queue as sync_queue
from sync.identity import sync_prefix
from sync.mode import effective_mode
from sync.models import DatabaseReplication, ObjectQueue, RemoteInfo, SyncStatus


@dataclass
class ManagerState:
    """What the running sync manager knows and the database does not."""

    reachability: str | None = None
    checked_at: float | None = None
    probe_detail: str | None = None
    litestream_pid: int | None = None
    last_sync_at: str | None = None
    last_snapshot_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


def save_state(settings: Settings, state: ManagerState) -> None:
    layout.write_private(layout.state_file(settings), json.dumps(asdict(state)) + "\n")


def load_state(settings: Settings) -> ManagerState:
    try:
        data: dict[str, Any] = json.loads(layout.state_file(settings).read_text("utf-8"))
        known = set(ManagerState.__dataclass_fields__)
        return ManagerState(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return ManagerState()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stamp(seconds: float | None) -> str | None:
    return iso(datetime.fromtimestamp(seconds, UTC)) if seconds else None


def compute(settings: Settings, db: sqlite_utils.Database) -> SyncStatus:
    """The status now (see the module docstring)."""
    mode = effective_mode(db, settings)
    configured = bool(settings.sync_remote)
    state = load_state(settings) if configured else ManagerState()
    remote = None
    if configured:
        remote = RemoteInfo(
            kind=settings.sync_remote,
            bucket=settings.sync_bucket,
            prefix=sync_prefix(settings),
            endpoint=settings.sync_endpoint,
            encrypted=settings.sync_encrypt,
        )
    running = _pid_alive(state.litestream_pid)
    live = litestream.last_sync_at(settings) if configured and running else None
    last = live or (litestream.parse_time(state.last_sync_at) if state.last_sync_at else None)
    now = datetime.now(UTC)
    lag = (now - last).total_seconds() if last else None
    detail = None
    if not configured:
        detail = "no remote configured (RADIANT_SYNC_REMOTE)"
    elif mode is not Mode.ONLINE:
        detail = "offline mode: replication is paused"
    elif not running:
        detail = "litestream is not running"
    elif last is None:
        detail = "no successful sync yet since litestream started"
    stale = configured and mode is Mode.ONLINE and (lag is None or lag > settings.sync_stale_s)
    counts = sync_queue.counts(db)
    evicted = int(
        db.execute("SELECT COUNT(*) FROM instances WHERE storage_state = 'remote'").fetchone()[0]
    )
    errors = [
        e
        for e in (
            state.probe_detail if state.reachability not in (None, "reachable") else None,
            counts.last_error,
            state.last_error,
        )
        if e
    ]
    return SyncStatus(
        mode=mode,
        configured=configured,
        remote=remote,
        reachability=state.reachability,
        checked_at=_stamp(state.checked_at),
        database=DatabaseReplication(
            running=running,
            pid=state.litestream_pid if running else None,
            last_sync_at=iso(last) if last else None,
            lag_s=round(lag, 3) if lag is not None else None,
            stale=stale,
            detail=detail,
        ),
        objects=ObjectQueue(
            pending=counts.pending,
            pending_bytes=counts.pending_bytes,
            uploading=counts.uploading,
            uploading_bytes=counts.uploading_bytes,
            failed=counts.failed,
            failed_bytes=counts.failed_bytes,
            done=counts.done,
            done_bytes=counts.done_bytes,
            evicted_instances=evicted,
        ),
        last_snapshot_at=_stamp(state.last_snapshot_at),
        last_error=errors[0] if errors else None,
    )
