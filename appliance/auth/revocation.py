"""Ending sessions before they expire: one bearer token at sign-out, or every token and screen
session of an account (by an administrator, by its owner, and whenever the account is disabled,
so re-enabling it never revives an old token).

A token is a JWT (RFC 7519) whose ``jti`` names it and whose ``iat`` says when it started; a
screen session records when it started. Both are refused once their start is at or before the
account's ``sessions_revoked_at`` (whole Unix seconds, as ``iat`` is), or, for a token, once its
``jti`` is in ``revoked_tokens``. Revoked rows are kept only until the token would have expired.
"""

from __future__ import annotations

import time
from typing import Any

import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import transaction
from appliance.db.rows import fetch_one, now_iso
from appliance.errors import Forbidden, NotFound


def still_valid(
    db: sqlite_utils.Database, user_id: str, started_at: float, jti: str | None = None
) -> bool:
    """Whether a token or screen session of ``user_id`` that started at ``started_at`` (Unix
    seconds) and is named ``jti`` (tokens) has not been ended."""
    row = db.execute(
        "SELECT sessions_revoked_at, EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?)"
        " FROM users WHERE id = ?",
        (jti or "", user_id),
    ).fetchone()
    if row is None:
        return False
    revoked_at, token_revoked = row
    if token_revoked:
        return False
    return revoked_at is None or int(started_at) > int(revoked_at)


def mark_revoked(db: sqlite_utils.Database, user_id: str) -> int:
    """Set the account's revocation second to now (inside the caller's transaction)."""
    now = int(time.time())
    db.execute("UPDATE users SET sessions_revoked_at = ? WHERE id = ?", (now, user_id))
    return now


def revoke_sessions(db: sqlite_utils.Database, user_id: str, actor: Actor) -> int:
    """End every token and screen session of ``user_id`` (audited ``user.sessions_revoke``);
    administrators may do it for anyone, other users for themselves. Returns the revocation
    time (Unix seconds)."""
    with transaction(db):
        if actor.role != "admin" and actor.user_id != user_id:
            audit.record(db, actor, "user.sessions_revoke", object_type="user",
                         object_id=user_id, outcome="refused")
            forbidden = True
        else:
            forbidden = False
            if fetch_one(db, "SELECT id FROM users WHERE id = ?", (user_id,)) is None:
                raise NotFound(f"user {user_id} not found")
            at = mark_revoked(db, user_id)
            audit.record(db, actor, "user.sessions_revoke", object_type="user",
                         object_id=user_id, detail={"revoked_at": at})
    if forbidden:
        raise Forbidden("only an administrator may end another user's sessions")
    return at


def revoke_token(db: sqlite_utils.Database, claims: dict[str, Any], actor: Actor) -> None:
    """End the one token whose verified ``claims`` are given (sign-out; audited
    ``auth.logout``), and forget revoked tokens that have expired meanwhile."""
    now = int(time.time())
    with transaction(db):
        db.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (now,))
        db.execute(
            "INSERT OR IGNORE INTO revoked_tokens (jti, user_id, expires_at, revoked_at)"
            " VALUES (?, ?, ?, ?)",
            (str(claims["jti"]), str(claims["sub"]), int(claims["exp"]), now_iso()),
        )
        audit.record(db, actor, "auth.logout", object_type="user", object_id=str(claims["sub"]))
