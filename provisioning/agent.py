"""The box's fleet agent: one background thread that, every ``RADIANT_FLEET_INTERVAL_S`` while
the box is online, reads ``desired.json`` (applies it when accepted, see
:mod:`provisioning.desired`), then writes ``status.json`` (signed by the device key).

Offline, nothing leaves the box: the agent only waits; a document that switches the box offline
is followed by one last status so the fleet sees the switch. Rejected documents (unsigned,
altered, another key, replayed serial, bad values) are ignored, audited once each, and reported
in the status (``desired_state`` and ``last_error``). The last accepted serial and hash are kept
in the ``settings`` table (``fleet.desired``), in the same transaction as the audit row.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import ENV_PREFIX, Mode, Settings
from appliance.context import AppContext
from appliance.db.connection import transaction
from appliance.db.rows import now_iso
from appliance.logs import get_logger
from provisioning import audit_checkpoints, desired, device, envfile
from provisioning.bucket import DESIRED_DOC, STATUS_DOC, DocumentError, FleetBucket, for_box
from provisioning.service import is_provisioned, register
from provisioning.status_report import (
    STATUS_FORMAT,
    DesiredReport,
    receiver_state,
    status_document,
    tls_state,
    update_state,
)
from sync.mode import effective_mode, set_mode
from sync.rclone import RcloneError

if TYPE_CHECKING:
    pass

log = get_logger("radiant.fleet")

__all__ = [
    "ACTOR",
    "DESIRED_KEY",
    "STATUS_FORMAT",
    "DesiredReport",
    "FleetAgent",
    "receiver_state",
    "should_run",
    "stored_desired",
    "tls_state",
    "update_state",
]
DESIRED_KEY = "fleet.desired"
ACTOR = Actor.system("fleet")


def stored_desired(db: sqlite_utils.Database) -> dict[str, Any]:
    row = db.execute("SELECT value FROM settings WHERE key = ?", (DESIRED_KEY,)).fetchone()
    if row is None:
        return {}
    try:
        value = json.loads(str(row[0]))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def should_run(settings: Settings) -> bool:
    """The agent runs on a provisioned box with a remote."""
    return bool(settings.sync_remote) and is_provisioned(settings)


class FleetAgent:
    """See the module docstring. ``receiver_state`` and ``on_mode_change`` come from the app."""

    def __init__(
        self,
        ctx: AppContext,
        *,
        receiver_state: Callable[[], dict[str, Any]] | None = None,
        on_mode_change: Callable[[], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.receiver_state = receiver_state
        self.on_mode_change = on_mode_change
        self.started = time.monotonic()
        self.report = DesiredReport()
        self.last_error: str | None = None
        self.rounds = 0
        self._bucket: FleetBucket | None = None
        self._registered = False
        self._audited_rejections: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None or not should_run(self.settings):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="fleet-agent", daemon=True)
        self._thread.start()
        log.info("fleet_agent_started", interval_s=self.settings.fleet_interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.run_round()
                except Exception as exc:
                    self.last_error = f"fleet round failed: {exc.__class__.__name__}: {exc}"[:400]
                    log.exception("fleet_round_failed")
                self._wake.wait(self.settings.fleet_interval_s)
                self._wake.clear()
        finally:
            self.ctx.pool.release()

    @property
    def bucket(self) -> FleetBucket:
        if self._bucket is None:
            self._bucket = for_box(self.settings)
        return self._bucket

    def run_round(self) -> bool:
        """One round; returns whether a status was published. Callable directly by tests."""
        db = self.ctx.pool.get()
        if effective_mode(db, self.settings) is not Mode.ONLINE:
            return False
        self.rounds += 1
        device_id = device.identity(self.settings).device_id
        try:
            if not self._registered:
                register(self.settings)
                self._registered = True
            self.check_desired(db, device_id)
            self.publish(db)
        except (RcloneError, OSError) as exc:
            self.last_error = f"bucket: {exc}"[:400]
            log.warning("fleet_bucket_error", detail=self.last_error)
            return False
        if self.report.state != "rejected":
            self.last_error = None  # reported once in the status just published
        return True

    def check_desired(self, db: sqlite_utils.Database, device_id: str) -> desired.Verdict | None:
        """Read, judge and apply (or reject) this box's desired.json."""
        stored = stored_desired(db)
        last_serial = int(stored.get("serial") or 0)
        self.report.applied_serial = last_serial
        try:
            document = self.bucket.get_json(device_id, DESIRED_DOC)
        except DocumentError as exc:
            self._reject(db, device_id, desired.Verdict("reject", "", None, str(exc)))
            return None
        if document is None:
            return None
        verdict = desired.judge(
            document,
            device_id=device_id,
            fleet_key=device.pinned_fleet_key(self.settings),
            last_serial=last_serial,
            last_sha256=stored.get("sha256"),
        )
        if verdict.action == "reject":
            self._reject(db, device_id, verdict)
        elif verdict.action == "apply":
            self._apply(db, device_id, verdict)
        elif self.report.state != "applied":  # the applied document is back (or after a start)
            self.report.state, self.report.reason = "applied", None
            self.report.serial, self.report.sha256 = verdict.serial, verdict.sha256
            self.last_error = None
        return verdict

    def _reject(self, db: sqlite_utils.Database, device_id: str, verdict: desired.Verdict) -> None:
        reason = verdict.reason or "rejected"
        self.report.state, self.report.reason = "rejected", reason
        self.report.serial, self.report.sha256, self.report.at = (
            verdict.serial,
            verdict.sha256 or None,
            now_iso(),
        )
        self.last_error = f"desired.json rejected: {reason}"[:400]
        marker = f"{verdict.sha256}:{reason}"
        if marker in self._audited_rejections:
            return
        self._audited_rejections.add(marker)
        audit.record(
            db,
            ACTOR,
            "fleet.desired.reject",
            object_type="device",
            object_id=device_id,
            outcome="failure",
            detail={"serial": verdict.serial, "sha256": verdict.sha256 or None, "reason": reason},
        )
        log.warning("fleet_desired_rejected", serial=verdict.serial, reason=reason)

    def _apply(self, db: sqlite_utils.Database, device_id: str, verdict: desired.Verdict) -> None:
        values = verdict.values or {}
        try:
            desired.combined(self.settings, values)
        except desired.DesiredError as exc:
            self._reject(
                db, device_id, desired.Verdict("reject", verdict.sha256, verdict.serial, str(exc))
            )
            return
        overridden = sorted(
            k
            for k, f in desired.KEYS.items()
            if f and k in values and f"{ENV_PREFIX}{f.upper()}" in os.environ
        )
        restart = sorted(k for k in values if k in desired.AT_RESTART)
        mode_before = effective_mode(db, self.settings)
        env_text = envfile.render(
            desired.env_values(values),
            f"Written by the fleet agent on {now_iso()} from desired.json serial {verdict.serial}"
            f" (sha256 {verdict.sha256}).\nRead at start-up above provisioned.env, below the "
            "environment. Do not edit: the next fleet document replaces it.",
        )
        with transaction(db):
            current = int(stored_desired(db).get("serial") or 0)
            if verdict.serial is None or verdict.serial <= current:
                return  # another round got there first
            if "mode" in values:
                set_mode(db, self.settings, Mode(values["mode"]), ACTOR)
            db.execute(
                "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (
                    DESIRED_KEY,
                    json.dumps(
                        {"serial": verdict.serial, "sha256": verdict.sha256, "at": now_iso()}
                    ),
                    now_iso(),
                    ACTOR.name,
                ),
            )
            audit.record(
                db,
                ACTOR,
                "fleet.desired.apply",
                object_type="device",
                object_id=device_id,
                detail={
                    "serial": verdict.serial,
                    "sha256": verdict.sha256,
                    "keys": sorted(values),
                    "at_restart": restart,
                    "env_overridden": overridden,
                },
            )
            envfile.write(self.settings.data_dir / envfile.FLEET_ENV, env_text)
        self._apply_live(values, overridden)
        self.report = DesiredReport(
            state="applied",
            serial=verdict.serial,
            sha256=verdict.sha256,
            at=now_iso(),
            applied_serial=verdict.serial or 0,
            restart_needed=restart,
            env_overridden=overridden,
        )
        self.last_error = None
        log.info("fleet_desired_applied", serial=verdict.serial, keys=sorted(values))
        if "mode" in values and Mode(values["mode"]) is not mode_before and self.on_mode_change:
            self.on_mode_change()

    def _apply_live(self, values: dict[str, Any], overridden: list[str]) -> None:
        """Settings read at each use (AI engine per analysis, eviction per round) change now."""
        for key, value in values.items():
            field_name = desired.KEYS.get(key)
            if field_name is None or key in desired.AT_RESTART or key in overridden:
                continue
            setattr(self.settings, field_name, value)

    def status_document(self, db: sqlite_utils.Database) -> dict[str, Any]:
        """status.json's body, signed by the device key (:mod:`provisioning.status_report`)."""
        return status_document(
            self.settings,
            db,
            started=self.started,
            last_error=self.last_error,
            report=self.report,
            receiver=self.receiver_state,
        )

    def publish(self, db: sqlite_utils.Database) -> dict[str, Any]:
        document = self.status_document(db)
        self.bucket.put_json(document["device_id"], STATUS_DOC, document)
        checkpoint = audit_checkpoints.latest(self.settings)
        if checkpoint:  # beside the status: a copy the box alone cannot rewrite later
            self.bucket.put_json(document["device_id"], audit_checkpoints.BUCKET_DOC, checkpoint)
        return document
