"""One update round of a box: channel -> download -> verify -> slot -> switch -> health ->
migrate, or roll back.

1. ``fleet/releases/<channel>/channel.json`` (signed by the fleet key) names the channel's
   version and its release document's SHA-256. Nothing happens unless that version is newer
   than the active slot's and has not failed here before (a failed version is never retried).
2. The release folder is copied to ``<data dir>/update/staging`` and verified (signature,
   every size and SHA-256, no extra file) BEFORE anything is installed; a refusal is reported.
3. The slot is installed (offline pip from the bundle's wheels) and ``current`` swapped to it.
4. The appliance is restarted with database migrations held back
   (``RADIANT_DB_MIGRATE_AT_START=false``) and must answer ``/healthz`` within the deadline.
5. Only then ``radiant migrate`` of the new slot runs, and the appliance is restarted normally
   and checked again.
6. Any failure before the migration: ``current`` goes back to the previous slot, which is
   restarted, and the version is recorded as failed. After the migration, a slot whose release
   reads an older schema can no longer be used: the rollback is refused and the state says so.
7. A round cut short after the switch (power cut, reboot) is finished by the next round: the
   new slot is judged (health, migration, health) before anything else.

The outcome is kept in ``<data dir>/update/state.json``, which the fleet status reports.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.config import Settings
from appliance.db.rows import now_iso
from provisioning import signing
from provisioning.update.release import ReleaseError, parse_version, verify
from provisioning.update.slots import SlotError, Slots

STATE_FILE = "state.json"
HOLD_MIGRATIONS = {"RADIANT_DB_MIGRATE_AT_START": "false"}


class Restarter(Protocol):
    """Restarts the appliance from ``<apps>/current`` (systemd on a box, a process in tests)."""

    def restart(self, env: dict[str, str]) -> None: ...


class Source(Protocol):
    """Where releases come from (the fleet bucket, :mod:`provisioning.update.bucket`)."""

    def channel(self, channel: str) -> dict[str, Any] | None: ...

    def fetch_release(self, channel: str, version: str, dest: Path) -> None: ...


@dataclass
class SystemdRestarter:
    """``systemctl restart UNIT``; extra variables go through the manager's environment
    (``set-environment``) and are removed after the restart."""

    unit: str = "radiant.service"
    systemctl: str = "systemctl"

    def restart(self, env: dict[str, str]) -> None:
        held = [f"{k}={v}" for k, v in env.items()]
        if held:
            subprocess.run([self.systemctl, "set-environment", *held], check=True, timeout=60)
        try:
            subprocess.run([self.systemctl, "restart", self.unit], check=True, timeout=300)
        finally:
            if held:
                subprocess.run([self.systemctl, "unset-environment", *env], check=False, timeout=60)


def pinned_context(cert: Path) -> ssl.SSLContext:
    """TLS that trusts exactly ``cert`` (the certificate this box's appliance serves): the file
    is the trust anchor (partial chain), so a box or site certificate works without its CA and
    whatever names it carries."""
    context = ssl.create_default_context(cafile=str(cert))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False  # the pin is the certificate itself, not a name
    return context


def healthy(
    url: str,
    deadline_s: float,
    sleep: Callable[[float], None] = time.sleep,
    context: ssl.SSLContext | None = None,
) -> bool:
    """True once ``GET url`` answers 200 with ``{"status": "ok"}`` within ``deadline_s``
    (``context`` for an https URL)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
                body = json.loads(response.read(65536) or b"{}")
            if isinstance(body, dict) and body.get("status") == "ok":
                return True
        except (OSError, ValueError, urllib.error.HTTPError):
            pass
        if time.monotonic() >= end:
            return False
        sleep(1.0)


def db_schema(settings: Settings) -> int:
    """The data's schema version (highest applied migration; 0 without a database)."""
    if not settings.db_path.exists():
        return 0
    uri = f"file:{settings.db_path}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as conn:
        try:
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0] or 0)


class Updater:
    """One box's updater; every dependency is given (slots, source, restart, health URL)."""

    def __init__(
        self,
        settings: Settings,
        slots: Slots,
        source: Source,
        restarter: Restarter,
        fleet_key: Ed25519PublicKey | None,
        health_url: str,
        deadline_s: float = 180.0,
        health_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.slots = slots
        self.source = source
        self.restarter = restarter
        self.fleet_key = fleet_key
        self.health_url = health_url
        self.health_context = health_context
        self.deadline_s = deadline_s
        self.dir = settings.data_dir / "update"

    # --- state ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            value = json.loads((self.dir / STATE_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            value = {}
        return value if isinstance(value, dict) else {}

    def _save(self, state: dict[str, Any]) -> None:
        data = (json.dumps(state, indent=2, sort_keys=True) + "\n").encode("utf-8")
        signing.write_atomic(self.dir / STATE_FILE, data, mode=0o644)
        # The updater runs as root; the appliance (its owner) reads the state for the fleet.
        owner = self.settings.data_dir.stat()
        if os.geteuid() == 0 and owner.st_uid != 0:
            for path in (self.dir, self.dir / STATE_FILE):
                os.chown(path, owner.st_uid, owner.st_gid)

    def _record(
        self,
        outcome: str,
        version: str | None,
        reason: str | None = None,
        previous: str | None = None,
    ) -> dict[str, Any]:
        state = self.state()
        state["last"] = {"outcome": outcome, "version": version, "reason": reason, "at": now_iso()}
        if previous is not None:
            state["last"]["previous"] = previous
        state["current"] = self.slots.current()
        if outcome in ("failed", "rolled_back") and version:
            state.setdefault("failed", {})[version] = reason
        state["rollback_blocked"] = self._blocked()
        self._save(state)
        return state

    def _blocked(self) -> dict[str, str]:
        """Slots that cannot run on the data's schema, with why."""
        schema = db_schema(self.settings)
        blocked = {}
        for version in self.slots.versions():
            reads = self.slots.schema_version(version)
            if reads is not None and reads < schema:
                blocked[version] = (
                    f"the database is at schema {schema}; {version} reads up to {reads}"
                )
        return blocked

    # --- the round -------------------------------------------------------------------------

    def run_round(self) -> dict[str, Any]:
        """Look for, apply or refuse one release; returns the state (``last`` says what)."""
        resumed = self._resume(self.state().get("last") or {})
        if resumed is not None:
            return resumed
        channel = self.settings.software_channel
        current = self.slots.current()
        if self.fleet_key is None:
            return self._record("refused", None, "no fleet key pinned on this box")
        try:
            doc = self.source.channel(channel)
        except Exception as exc:  # the bucket is unreachable: try again next round
            return self._record("offline", None, f"{type(exc).__name__}: {exc}"[:300])
        if doc is None:
            return self._record("up_to_date", current, f"no release on channel {channel}")
        try:
            signing.verify(doc, self.fleet_key)
            version = str(doc.get("version"))
            newer = current is None or parse_version(version) > parse_version(current)
        except (signing.SignatureError, ValueError) as exc:
            return self._record("refused", None, f"channel.json: {exc}")
        if doc.get("channel") != channel:
            return self._record("refused", version, f"channel.json is not for channel {channel}")
        if not newer:
            return self._record("up_to_date", current)
        if version in self.state().get("failed", {}):
            return self._record("skipped", version, "this version failed here before")
        return self._apply(channel, version, str(doc.get("release_sha256")), current)

    def _apply(
        self, channel: str, version: str, release_sha: str, previous: str | None
    ) -> dict[str, Any]:
        staging = self.dir / "staging" / version
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        try:
            self.source.fetch_release(channel, version, staging)
            assert self.fleet_key is not None
            release = verify(staging, self.fleet_key)
            if release.sha256 != release_sha or release.version != version:
                raise ReleaseError("release.json is not the one channel.json names")
        except (ReleaseError, OSError) as exc:
            return self._record("refused", version, str(exc))
        except Exception as exc:  # download failed: next round
            return self._record("offline", version, f"{type(exc).__name__}: {exc}"[:300])
        try:
            self.slots.install(release, staging)
            self.slots.switch(version)
        except SlotError as exc:
            return self._record("failed", version, str(exc))
        self._record("trying", version, previous=previous)
        self.restarter.restart(HOLD_MIGRATIONS)
        return self._judge(version, previous)

    def _judge(self, version: str, previous: str | None) -> dict[str, Any]:
        """Health first, then the migration, then health again; roll back on any failure."""
        if not healthy(self.health_url, self.deadline_s, context=self.health_context):
            return self._roll_back(version, previous, "no healthy /healthz before the deadline")
        migrate = subprocess.run(
            [
                str(self.slots.venv_bin(version, "radiant")),
                "migrate",
                "--data-dir",
                str(self.settings.data_dir),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=3600,
        )
        if migrate.returncode != 0:
            tail = (migrate.stderr or migrate.stdout).strip().splitlines()[-1:] or [""]
            return self._roll_back(version, previous, f"migration failed: {tail[0][:200]}")
        self.restarter.restart({})
        if not healthy(self.health_url, self.deadline_s, context=self.health_context):
            return self._roll_back(version, previous, "no healthy /healthz after the migration")
        return self._record("applied", version)

    def _resume(self, last: dict[str, Any]) -> dict[str, Any] | None:
        """A round cut short (power, reboot) after the switch: judge the new slot now."""
        version = last.get("version")
        if last.get("outcome") != "trying" or version != self.slots.current():
            return None
        previous = last.get("previous")
        self.restarter.restart(HOLD_MIGRATIONS)
        return self._judge(str(version), previous if isinstance(previous, str) else None)

    def _roll_back(self, version: str, previous: str | None, reason: str) -> dict[str, Any]:
        if previous is None:
            return self._record("failed", version, reason + "; no previous slot")
        blocked = self._blocked().get(previous)
        if blocked is not None:
            return self._record(
                "failed", version, f"{reason}; rollback to {previous} refused: {blocked}"
            )
        self.slots.switch(previous)
        self.restarter.restart({})
        back = healthy(self.health_url, self.deadline_s, context=self.health_context)
        note = "" if back else f"; {previous} is not healthy either"
        return self._record("rolled_back", version, reason + note)
