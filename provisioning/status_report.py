"""The box's ``status.json`` for the fleet: identity, version and update, mode, disk, queues,
replication, AI engine, receiver, what became of the last desired document, retention and TLS;
signed by the device key."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlite_utils

from appliance import __version__, tls
from appliance.config import Settings
from appliance.db.rows import now_iso
from provisioning import device, signing
from provisioning.marker import read_marker
from sync import status as sync_status

if TYPE_CHECKING:
    from appliance.dicom.receiver import ReceiverStatus

STATUS_FORMAT = "radiant-status/1"


@dataclass
class DesiredReport:
    """What became of the last desired document (the ``desired_state`` of status.json)."""

    state: str = "none"  # none | applied | rejected
    serial: int | None = None
    sha256: str | None = None
    reason: str | None = None
    at: str | None = None
    applied_serial: int = 0
    restart_needed: list[str] = field(default_factory=list)
    env_overridden: list[str] = field(default_factory=list)


def status_document(
    settings: Settings,
    db: sqlite_utils.Database,
    *,
    started: float,
    last_error: str | None,
    report: DesiredReport,
    receiver: Callable[[], dict[str, Any]] | None,
) -> dict[str, Any]:
    """status.json's body, signed by the device key. ``started`` is the agent's start
    (``time.monotonic()``), ``receiver`` gives the receiver's part when there is one."""
    ident = device.identity(settings)
    sync = sync_status.compute(settings, db)
    jobs = dict(
        db.execute(
            "SELECT status, COUNT(*) FROM jobs WHERE status IN ('queued', 'running')"
            " GROUP BY status"
        ).fetchall()
    )
    usage = shutil.disk_usage(settings.data_dir)
    body: dict[str, Any] = {
        "format": STATUS_FORMAT,
        "device_id": ident.device_id,
        "device_name": read_marker(settings).get("device_name"),
        "site_name": settings.site_name,
        "reported_at": now_iso(),
        "version": __version__,
        "software_channel": settings.software_channel,
        "software_update": update_state(settings),
        "mode": sync.mode.value,
        "uptime_s": round(time.monotonic() - started, 1),
        "disk": {
            "total_bytes": usage.total,
            "free_bytes": usage.free,
            "used_percent": round(100 * (usage.total - usage.free) / usage.total, 1)
            if usage.total
            else None,
        },
        "queues": {
            "sync_pending": sync.objects.pending,
            "sync_uploading": sync.objects.uploading,
            "sync_failed": sync.objects.failed,
            "jobs_queued": int(jobs.get("queued", 0)),
            "jobs_running": int(jobs.get("running", 0)),
        },
        "replication": {
            "reachability": sync.reachability,
            "last_sync_at": sync.database.last_sync_at,
            "lag_s": sync.database.lag_s,
            "stale": sync.database.stale,
        },
        "last_error": last_error or sync.last_error,
        "ai": {
            "engine": settings.ai_engine,
            "model": settings.ai_model,
            "online_endpoint": settings.ai_online_endpoint,
            "online_model": settings.ai_online_model,
            "auto": settings.ai_auto,
        },
        "receiver": receiver() if receiver else None,
        "desired_state": {
            "state": report.state,
            "serial": report.serial,
            "sha256": report.sha256,
            "reason": report.reason,
            "at": report.at,
            "applied_serial": report.applied_serial,
            "restart_needed": report.restart_needed,
            "env_overridden": report.env_overridden,
        },
        "retention_days": settings.retention_days,
        "public_key": ident.public_key,
        "tls": tls_state(settings),
    }
    return signing.sign(body, device.ensure_device_key(settings))


def tls_state(settings: Settings) -> dict[str, Any]:
    """The certificate part of status.json, so hospital IT can pin it."""
    paths = tls.certificate_paths(settings)
    if paths is None:
        return {"fingerprint_sha256": None, "not_after": None, "source": None}
    return {
        "fingerprint_sha256": tls.fingerprint_sha256(paths[0]),
        "not_after": tls.not_after(paths[0]).isoformat(),
        "source": "site" if tls.site_supplied(settings) else "box",
    }


def update_state(settings: Settings) -> dict[str, Any] | None:
    """The updater's last outcome, failed versions and slots barred from rollback
    (``<data dir>/update/state.json``, :mod:`provisioning.update.updater`); None before any."""
    try:
        value = json.loads((settings.data_dir / "update" / "state.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    return {k: value.get(k) for k in ("current", "last", "failed", "rollback_blocked")}


def receiver_state(status: ReceiverStatus) -> dict[str, Any]:
    """The receiver's part of status.json (no peer names or addresses)."""
    return {
        "listening": status.listening,
        "ae_title": status.ae_title,
        "port": status.port,
        "error": status.error,
        "active_associations": status.active_associations,
        "stored": status.stored,
        "quarantined": status.quarantined,
        "failed": status.failed,
        "refused_out_of_space": status.refused_out_of_space,
    }
