"""Sign-in throttling: per (account, client address) locks and per-address slow-down.

- A wrong password (or an unknown account name) counts against the pair (name, address). At
  ``max_failures`` the pair is locked for ``lockout``: the right password from that address is
  refused, from another address it still signs in (so nobody locks the administrator out from
  afar).
- Every failure also counts against the address, in a window of ``client_window``. Past
  ``client_delay_after`` failures each next attempt must wait 1, 2, 4 ... seconds (at most
  ``client_max_delay_s``); attempts sooner are refused without checking the password. At
  ``client_max_failures`` the address is refused for ``client_block``, whatever name it tries.

The functions run inside the caller's transaction (:func:`appliance.auth.service.authenticate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from appliance.config import Settings
from appliance.db.rows import fetch_one, iso

UNKNOWN_CLIENT = "unknown"


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    client_delay_after: int = 10
    client_max_failures: int = 30
    client_window: timedelta = timedelta(minutes=15)
    client_block: timedelta = timedelta(minutes=15)
    client_max_delay_s: int = 60


def policy(settings: Settings) -> LoginPolicy:
    """The policy the settings (``RADIANT_LOGIN_*``) describe."""
    return LoginPolicy(
        max_failures=settings.login_max_failures,
        lockout=timedelta(minutes=settings.login_lockout_minutes),
        client_delay_after=settings.login_client_delay_after,
        client_max_failures=settings.login_client_max_failures,
        client_window=timedelta(minutes=settings.login_client_window_minutes),
        client_block=timedelta(minutes=settings.login_client_block_minutes),
    )


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused before its password is checked."""

    reason: str  # "address blocked" | "too fast" | "locked"
    retry_after: int  # seconds


@dataclass(frozen=True)
class FailureOutcome:
    attempts_left: int  # before the (name, address) pair locks; 0 when it just locked
    locked_until: str | None
    client_blocked_until: str | None


def client_key(client: str | None) -> str:
    return (client or UNKNOWN_CLIENT)[:64]


def _seconds(until: str, now: datetime) -> int:
    moment = datetime.strptime(until, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=now.tzinfo)
    return max(1, int((moment - now).total_seconds() + 0.999))


def check(db: sqlite_utils.Database, name: str, client: str, now: datetime) -> Refusal | None:
    """A refusal when the address or the (name, address) pair may not try now."""
    stamp = iso(now)
    row = fetch_one(db, "SELECT * FROM login_clients WHERE client = ?", (client,))
    if row is not None:
        if row["blocked_until"] and row["blocked_until"] > stamp:
            return Refusal("address blocked", _seconds(row["blocked_until"], now))
        if row["next_allowed_at"] and row["next_allowed_at"] > stamp:
            return Refusal("too fast", _seconds(row["next_allowed_at"], now))
    pair = fetch_one(
        db, "SELECT * FROM login_failures WHERE username = ? AND client = ?", (name, client)
    )
    if pair is not None and pair["locked_until"] and pair["locked_until"] > stamp:
        return Refusal("locked", _seconds(pair["locked_until"], now))
    return None


def record_failure(
    db: sqlite_utils.Database, name: str, client: str, now: datetime, policy: LoginPolicy
) -> FailureOutcome:
    """Count one failure against the pair and the address."""
    stamp = iso(now)
    pair = fetch_one(
        db, "SELECT * FROM login_failures WHERE username = ? AND client = ?", (name, client)
    )
    failures = (int(pair["failures"]) if pair else 0) + 1
    locked_until = None
    if failures >= policy.max_failures:
        locked_until = iso(now + policy.lockout)
    db.execute(
        "INSERT INTO login_failures (username, client, failures, locked_until, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (username, client) DO UPDATE SET"
        " failures = excluded.failures, locked_until = excluded.locked_until,"
        " updated_at = excluded.updated_at",
        (name, client, 0 if locked_until else failures, locked_until, stamp),
    )
    blocked_until = _count_client(db, client, now, policy)
    return FailureOutcome(
        attempts_left=0 if locked_until else policy.max_failures - failures,
        locked_until=locked_until,
        client_blocked_until=blocked_until,
    )


def _count_client(
    db: sqlite_utils.Database, client: str, now: datetime, policy: LoginPolicy
) -> str | None:
    stamp = iso(now)
    row: dict[str, Any] | None = fetch_one(
        db, "SELECT * FROM login_clients WHERE client = ?", (client,)
    )
    if row is None or row["window_start"] < iso(now - policy.client_window):
        failures, window_start = 1, stamp
    else:
        failures, window_start = int(row["failures"]) + 1, row["window_start"]
    blocked_until = None
    next_allowed = None
    if failures >= policy.client_max_failures:
        blocked_until = iso(now + policy.client_block)
    elif failures > policy.client_delay_after:
        delay = min(2 ** (failures - policy.client_delay_after - 1), policy.client_max_delay_s)
        next_allowed = iso(now + timedelta(seconds=delay))
    db.execute(
        "INSERT INTO login_clients (client, failures, window_start, next_allowed_at,"
        " blocked_until, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client) DO UPDATE"
        " SET failures = excluded.failures, window_start = excluded.window_start,"
        " next_allowed_at = excluded.next_allowed_at, blocked_until = excluded.blocked_until,"
        " updated_at = excluded.updated_at",
        (
            client,
            0 if blocked_until else failures,
            stamp if blocked_until else window_start,
            next_allowed,
            blocked_until,
            stamp,
        ),
    )
    return blocked_until


def record_success(db: sqlite_utils.Database, name: str, client: str) -> None:
    """The pair starts afresh. The address's count stays: one valid account must not let an
    address go on guessing others."""
    db.execute("DELETE FROM login_failures WHERE username = ? AND client = ?", (name, client))


@dataclass(frozen=True)
class LockedPair:
    username: str
    client: str
    locked_until: str


def locked(db: sqlite_utils.Database, now: datetime) -> list[LockedPair]:
    """The (name, address) pairs locked now, newest first."""
    rows = db.execute(
        "SELECT username, client, locked_until FROM login_failures WHERE locked_until > ?"
        " ORDER BY locked_until DESC",
        (iso(now),),
    ).fetchall()
    return [LockedPair(str(u), str(c), str(t)) for u, c, t in rows]


def blocked_clients(db: sqlite_utils.Database, now: datetime) -> list[tuple[str, str]]:
    """Addresses refused now, with the end of their block."""
    rows = db.execute(
        "SELECT client, blocked_until FROM login_clients WHERE blocked_until > ?"
        " ORDER BY blocked_until DESC",
        (iso(now),),
    ).fetchall()
    return [(str(c), str(t)) for c, t in rows]


def unlock_account(db: sqlite_utils.Database, name: str) -> int:
    """Remove every lock and count of ``name`` (all addresses); how many pairs were locked."""
    count = db.execute(
        "SELECT COUNT(*) FROM login_failures WHERE username = ? AND locked_until IS NOT NULL",
        (name,),
    ).fetchone()[0]
    db.execute("DELETE FROM login_failures WHERE username = ?", (name,))
    return int(count)


def unblock_client(db: sqlite_utils.Database, client: str) -> bool:
    found = fetch_one(db, "SELECT client FROM login_clients WHERE client = ?", (client,))
    db.execute("DELETE FROM login_clients WHERE client = ?", (client,))
    return found is not None
