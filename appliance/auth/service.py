"""User accounts, password checks with lockout, and access tokens.

Passwords are hashed with Argon2id (pwdlib). Tokens are HS256 JWTs (PyJWT) signed with the
appliance's secret key; every request re-reads the user, so a disabled account, a changed role or
an ended session (:mod:`appliance.auth.revocation`) takes effect at once.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import sqlite_utils
from pwdlib import PasswordHash

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.auth import revocation, throttle
from appliance.auth.models import Role, UserCreate, UserOut
from appliance.auth.throttle import LoginPolicy as LoginPolicy
from appliance.db.connection import transaction
from appliance.db.rows import fetch_all, fetch_one, iso, new_id, now_iso, utc_now
from appliance.errors import Conflict, Locked, NotFound, Unauthorized

ALGORITHM = "HS256"
_hasher = PasswordHash.recommended()
# Verified against when the username is unknown, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _user_out(row: dict[str, Any]) -> UserOut:
    return UserOut(
        id=row["id"],
        username=row["username"],
        full_name=row["full_name"],
        role=Role(row["role"]),
        active=bool(row["active"]),
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
    )


def create_user(db: sqlite_utils.Database, data: UserCreate, actor: Actor) -> UserOut:
    """Create a user; Conflict when the username (case-insensitive) is taken."""
    now = now_iso()
    password_hash = _hasher.hash(data.password)  # outside the write lock: Argon2 is slow
    with transaction(db):
        if fetch_one(db, "SELECT id FROM users WHERE username = ?", (data.username,)):
            raise Conflict(f"username {data.username!r} is already taken")
        user_id = new_id()
        db.execute(
            "INSERT INTO users (id, username, full_name, password_hash, role, active,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
            (
                user_id,
                data.username,
                data.full_name,
                password_hash,
                data.role.value,
                now,
                now,
            ),
        )
        audit.record(
            db,
            actor,
            "user.create",
            object_type="user",
            object_id=user_id,
            detail={"role": data.role.value},
        )
        row = fetch_one(db, "SELECT * FROM users WHERE id = ?", (user_id,))
    assert row is not None
    return _user_out(row)


def count_admins(db: sqlite_utils.Database) -> int:
    return int(
        db.execute("SELECT COUNT(*) FROM users WHERE role = 'admin' AND active = 1").fetchone()[0]
    )


def get_user(db: sqlite_utils.Database, user_id: str) -> UserOut | None:
    row = fetch_one(db, "SELECT * FROM users WHERE id = ?", (user_id,))
    return _user_out(row) if row else None


def list_users(db: sqlite_utils.Database) -> list[UserOut]:
    """Every account, by username (no secrets)."""
    return [_user_out(row) for row in fetch_all(db, "SELECT * FROM users ORDER BY username")]


def set_active(db: sqlite_utils.Database, user_id: str, active: bool, actor: Actor) -> UserOut:
    """Enable or disable an account (audited ``user.enable`` / ``user.disable``).

    Refused (Conflict) for one's own account and for the last active administrator.
    """
    with transaction(db):
        row = fetch_one(db, "SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"user {user_id} not found")
        if not active and user_id == actor.user_id:
            raise Conflict("you cannot disable your own account")
        last_admin = row["role"] == Role.ADMIN.value and row["active"] and count_admins(db) <= 1
        if not active and last_admin:
            raise Conflict("the last active administrator cannot be disabled")
        db.execute(
            "UPDATE users SET active = ?, updated_at = ? WHERE id = ?",
            (1 if active else 0, now_iso(), user_id),
        )
        if not active:  # so that enabling the account again revives no old token or session
            revocation.mark_revoked(db, user_id)
        audit.record(
            db,
            actor,
            "user.enable" if active else "user.disable",
            object_type="user",
            object_id=user_id,
        )
        updated = fetch_one(db, "SELECT * FROM users WHERE id = ?", (user_id,))
    assert updated is not None
    return _user_out(updated)


class WrongCredentials(Unauthorized):
    """A refused password; ``attempts_left`` before this address's lock on the account."""

    def __init__(self, attempts_left: int) -> None:
        super().__init__("incorrect username or password")
        self.attempts_left = attempts_left
        if attempts_left == 1:
            self.extra = {"attempts_left": 1}


def authenticate(
    db: sqlite_utils.Database,
    username: str,
    password: str,
    *,
    client: str | None,
    request_id: str | None = None,
    policy: LoginPolicy | None = None,
) -> UserOut:
    """Check a password under the throttling rules of :mod:`appliance.auth.throttle`.

    Raises :class:`WrongCredentials` (bad credentials, with the attempts left) or Locked (the
    address, or this account from this address, must wait). Counts and audit rows are committed
    before the error is raised.

    The password is checked once, outside any transaction (Argon2id takes a fraction of a
    second, and every writer of the box would wait for it), under a process-wide gate: one
    sign-in at a time, so parallel attempts cannot outrun the counts. A password changed while
    it was being checked is refused.
    """
    policy = policy or LoginPolicy()
    name = username[:64]
    address = throttle.client_key(client)
    with _SIGN_IN_GATE:
        checked = fetch_one(db, "SELECT * FROM users WHERE username = ?", (name,))
        refusal = throttle.check(db, name, address, utc_now())
        valid, new_hash = False, None
        if refusal is None and checked is None:
            _hasher.verify(password, _DUMMY_HASH)
        elif refusal is None and checked is not None:
            valid, new_hash = _hasher.verify_and_update(password, checked["password_hash"])
        with transaction(db):
            row = fetch_one(db, "SELECT * FROM users WHERE username = ?", (name,))
            if checked is None or row is None or row["password_hash"] != checked["password_hash"]:
                valid = False
            result = _record_sign_in(
                db,
                row,
                _SignIn(name, address, client, request_id, valid, new_hash, refusal),
                policy,
            )
    if isinstance(result, Exception):
        raise result  # after the commit: the counts and audit rows stay
    return result


_SIGN_IN_GATE = threading.Lock()


@dataclass(frozen=True)
class _SignIn:
    name: str
    address: str
    client: str | None
    request_id: str | None
    valid: bool
    new_hash: str | None
    refusal: throttle.Refusal | None


def _record_sign_in(
    db: sqlite_utils.Database,
    row: dict[str, Any] | None,
    attempt: _SignIn,
    policy: LoginPolicy,
) -> UserOut | Exception:
    """Count and audit a checked (or refused) attempt, in the caller's transaction; the user,
    or the error to raise once the transaction has committed its rows."""
    name, address = attempt.name, attempt.address
    actor = Actor(
        name=row["username"] if row else name,
        role=row["role"] if row else None,
        user_id=row["id"] if row else None,
        client=attempt.client,
        request_id=attempt.request_id,
    )
    target = {"object_type": "user", "object_id": row["id"]} if row else {}
    now = utc_now()
    refusal = attempt.refusal
    if refusal is not None:
        audit.record(
            db, actor, "auth.login", outcome="failure", detail={"reason": refusal.reason}, **target
        )
        wait = refusal.retry_after // 60 + 1
        return Locked(
            "too many failed sign-in attempts from this address; try again in "
            f"{wait} minutes or ask an administrator"
            if refusal.reason != "too fast"
            else f"too many failed sign-in attempts; wait {refusal.retry_after} seconds",
            retry_after=refusal.retry_after,
        )
    if row is None or not attempt.valid or not row["active"]:
        outcome = throttle.record_failure(db, name, address, now, policy)
        reason = (
            "unknown user"
            if row is None
            else "bad password"
            if row["active"]
            else "disabled account"
        )
        audit.record(
            db, actor, "auth.login", outcome="failure", detail={"reason": reason}, **target
        )
        if outcome.locked_until:
            audit.record(
                db,
                actor,
                "auth.lockout",
                detail={
                    "until": outcome.locked_until,
                    "minutes": int(policy.lockout.total_seconds() // 60),
                    "scope": "account from this address",
                },
                **target,
            )
        if outcome.client_blocked_until:
            audit.record(
                db,
                actor,
                "auth.throttle",
                object_type="client",
                object_id=address,
                detail={"until": outcome.client_blocked_until},
            )
        return WrongCredentials(outcome.attempts_left)
    throttle.record_success(db, name, address)
    db.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?,"
        " password_hash = COALESCE(?, password_hash), updated_at = ? WHERE id = ?",
        (iso(now), attempt.new_hash, iso(now), row["id"]),
    )
    audit.record(db, actor, "auth.login", object_type="user", object_id=row["id"])
    fresh = fetch_one(db, "SELECT * FROM users WHERE id = ?", (row["id"],))
    assert fresh is not None
    return _user_out(fresh)


def unlock(
    db: sqlite_utils.Database, username: str, actor: Actor, *, client: str | None = None
) -> int:
    """Lift the sign-in locks of ``username`` from every address (and the block of ``client``
    when given); audited ``user.unlock``. NotFound for an unknown account."""
    with transaction(db):
        row = fetch_one(db, "SELECT id, username FROM users WHERE username = ?", (username,))
        if row is None:
            raise NotFound(f"user {username!r} not found")
        pairs = throttle.unlock_account(db, row["username"])
        db.execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, updated_at = ? WHERE id = ?",
            (now_iso(), row["id"]),
        )
        unblocked = throttle.unblock_client(db, client) if client else False
        audit.record(
            db,
            actor,
            "user.unlock",
            object_type="user",
            object_id=row["id"],
            detail={"locked_pairs": pairs, "client_unblocked": client if unblocked else None},
        )
    return pairs


def _seconds_until(moment: str, now: datetime) -> int:
    until = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return max(1, int((until - now).total_seconds()))


def issue_token(user: UserOut, secret: str, minutes: int) -> tuple[str, int]:
    """A signed access token for ``user`` and its lifetime in seconds."""
    now = utc_now()
    lifetime = timedelta(minutes=minutes)
    claims = {
        "sub": user.id,
        "name": user.username,
        "role": user.role.value,
        "iat": now,
        "exp": now + lifetime,
        "jti": new_id(),
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), int(lifetime.total_seconds())


def token_claims(token: str, secret: str) -> dict[str, Any]:
    """The claims of a valid, unexpired access token signed with ``secret``; Unauthorized for
    anything else."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "sub", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the session has expired; sign in again") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("invalid access token") from None
    if claims.get("typ") != "access":
        raise Unauthorized("invalid access token")
    return claims


def user_from_token(db: sqlite_utils.Database, token: str, secret: str) -> UserOut:
    """The active user a valid token names; Unauthorized for anything else (also a token
    ended by sign-out or revocation)."""
    claims = token_claims(token, secret)
    user = get_user(db, str(claims["sub"]))
    if user is None or not user.active:
        raise Unauthorized("the account no longer exists or is disabled")
    if not revocation.still_valid(db, user.id, float(claims["iat"]), str(claims["jti"])):
        raise Unauthorized("this session was ended (signed out or revoked); sign in again")
    if user.role.value != claims.get("role"):
        raise Unauthorized("the account's role changed; sign in again")
    return user
