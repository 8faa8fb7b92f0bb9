"""The sync manager: one background thread that, every ``RADIANT_SYNC_INTERVAL_S`` (or when
woken by a mode switch), runs a round:

1. offline mode: stop Litestream, touch nothing else (the queue keeps growing, nothing is lost);
2. online: probe the bucket. No such bucket or refused credentials: say so (log, status) and
   keep Litestream stopped. Otherwise keep Litestream running (also while the bucket is
   unreachable: it catches up by itself when the network returns);
3. when the bucket answers: drain the object queue, take the encrypted database snapshot when
   one is due, and once an hour enqueue files that have no queue row;
4. in every mode: evict old, signed, verified studies when the disk runs low.

The manager only starts when a remote is configured; its state is saved for the status.
"""

from __future__ import annotations

import threading
import time

from appliance.config import Mode
from appliance.context import AppContext
from appliance.logs import get_logger
from sync import eviction, rclone, snapshot
from sync import litestream as ls
from sync import queue as sync_queue
from sync.litestream import LitestreamSupervisor
from sync.mode import effective_mode
from sync.probe import ProbeResult, Reach, probe
from sync.rclone import Rclone, RcloneError
from sync.status import ManagerState, load_state, save_state
from sync.uploader import DrainReport, Uploader

log = get_logger("radiant.sync")
RECONCILE_EVERY_S = 3600.0
DRAIN_BUDGET_S = 300.0


class SyncManager:
    """Owns Litestream's supervisor and the object worker (see the module docstring)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.supervisor = LitestreamSupervisor(self.settings)
        self.rclone = Rclone(self.settings)
        self.state = load_state(self.settings) if self.configured else ManagerState()
        self.state.litestream_pid = None
        self.last_probe: ProbeResult | None = None
        self.last_drain: DrainReport | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._prepared = False
        self._reconciled_at = 0.0
        self.uploader = Uploader(
            self.settings,
            ctx.pool.get,
            self.rclone,
            reachable=self._still_reachable,
            stop=self._stop,
            release_db=ctx.pool.release,
        )

    @property
    def configured(self) -> bool:
        return bool(self.settings.sync_remote)

    def start(self) -> None:
        """Start the background thread (no-op without a remote)."""
        if not self.configured or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sync-manager", daemon=True)
        self._thread.start()
        log.info("sync_started", remote=self.settings.sync_remote)

    def stop(self) -> None:
        """Stop the thread and Litestream; rows in flight go back to pending."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None
        self.supervisor.stop()
        if self.configured:
            try:
                sync_queue.reset_in_flight(self.ctx.pool.get())
                self._save()
            except Exception:
                log.warning("sync_stop_cleanup_failed")
            finally:
                self.ctx.pool.release()

    def wake(self) -> None:
        """Run the next round now (after a mode switch)."""
        self._wake.set()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.run_round()
                except Exception as exc:
                    self._error(f"sync round failed: {exc.__class__.__name__}: {exc}"[:400])
                    log.exception("sync_round_failed")
                self._wake.wait(self.settings.sync_interval_s)
                self._wake.clear()
        finally:
            self.ctx.pool.release()

    def _prepare(self) -> None:
        rclone.write_config(self.settings)
        ls.write_config(self.settings)
        db = self.ctx.pool.get()
        sync_queue.reset_in_flight(db)
        self._prepared = True

    def run_round(self) -> None:
        """One round (see the module docstring); callable directly by tests."""
        db = self.ctx.pool.get()
        if effective_mode(db, self.settings) is not Mode.ONLINE:
            self.supervisor.stop()
            self.state.litestream_pid = None
            self._evict()
            self._save()
            return
        if not self._prepared:
            self._prepare()
        result = probe(self.settings, self.rclone)
        self._record_probe(result)
        if result.reach in (Reach.NO_BUCKET, Reach.DENIED):
            self.supervisor.stop()
            self.state.litestream_pid = None
            self._evict()
            self._save()
            return
        self.supervisor.ensure_running()
        self.state.litestream_pid = self.supervisor.state().pid
        if result.ok:
            self.state.last_error = None
            since = time.monotonic() - self._reconciled_at
            if not self._reconciled_at or since > RECONCILE_EVERY_S:
                added = sync_queue.reconcile(self.settings, db)
                self._reconciled_at = time.monotonic()
                if added:
                    log.info("sync_reconciled", added=added)
            self.last_drain = self.uploader.drain(budget_s=DRAIN_BUDGET_S)
            if self.last_drain.errors:
                self._error(self.last_drain.errors[-1])
            self._snapshot_if_due()
        self._evict()
        self._save()

    def _record_probe(self, result: ProbeResult) -> None:
        previous = self.last_probe.reach if self.last_probe else None
        self.last_probe = result
        self.state.reachability = result.reach.value
        self.state.checked_at = result.at
        self.state.probe_detail = result.detail
        if result.reach is not previous:
            if result.ok:
                log.info("sync_remote_reachable")
            elif result.reach is Reach.UNREACHABLE:
                log.info("sync_remote_unreachable", detail=result.detail)
            else:
                log.error("sync_remote_unusable", reason=result.reach.value, detail=result.detail)

    def _still_reachable(self) -> bool:
        result = probe(self.settings, self.rclone)
        self._record_probe(result)
        return result.ok

    def _snapshot_if_due(self) -> None:
        due = self.settings.sync_snapshot_hours * 3600
        last = self.state.last_snapshot_at
        if last is not None and time.time() - last < due:
            return
        try:
            snapshot.take(self.settings, self.ctx.pool.get(), self.rclone)
        except (RcloneError, OSError) as exc:
            self._error(f"database snapshot failed: {exc}"[:400])
            return
        self.state.last_snapshot_at = time.time()

    def _evict(self) -> None:
        try:
            eviction.evict_if_needed(self.ctx)
        except OSError as exc:
            self._error(f"eviction failed: {exc}"[:400])

    def _error(self, message: str) -> None:
        self.state.last_error = message
        self.state.last_error_at = time.time()

    def _save(self) -> None:
        last = ls.last_sync_at(self.settings) if self.state.litestream_pid else None
        if last is not None:
            self.state.last_sync_at = last.isoformat()
        lit_error = self.supervisor.last_error()
        if lit_error and not self.state.last_error:
            self._error(lit_error)
        save_state(self.settings, self.state)
