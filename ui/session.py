"""Screen sessions: sign-in through the appliance's auth service (same lockout and audit as
the API), kept server-side in ``app.storage.user`` (the browser's cookie only names that
storage). A session ends after ``RADIANT_SESSION_IDLE_MINUTES`` without activity and after
``RADIANT_SESSION_MAX_HOURS`` whatever happens; signing out removes it from the server. Every
page and every action re-reads the account and checks the role again."""

from __future__ import annotations

import json
import re
import time
from base64 import b64decode
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, TimestampSigner
from nicegui import app, context
from nicegui.storage import Storage
from starlette.requests import Request

from appliance.audit.models import Actor
from appliance.auth import revocation, throttle
from appliance.auth import service as auth
from appliance.auth.models import Role
from appliance.errors import Locked, Unauthorized
from ui import i18n, runtime

USER_ID = "uid"
EXPIRES = "expires"
STARTED = "started"
EXPIRED = "expired"
SESSION_COOKIE = "session"  # Starlette SessionMiddleware's cookie, as NiceGUI installs it
_SESSION_ID = re.compile(r"[0-9a-f-]{36}")  # NiceGUI's session ids are UUID4 strings

ADMIN = frozenset({Role.ADMIN})
CLINICAL = frozenset({Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN})
EVERYONE = frozenset(Role)
SIGNERS = frozenset({Role.RADIOLOGIST})
READERS = frozenset({Role.ADMIN, Role.RADIOLOGIST})  # the diagnostic viewer (OHIF) is offered


@dataclass(frozen=True)
class SessionUser:
    user_id: str
    username: str
    full_name: str | None
    role: Role
    client: str | None

    @property
    def actor(self) -> Actor:
        return Actor(name=self.username, role=self.role.value, user_id=self.user_id,
                      client=self.client)

    def may(self, roles: frozenset[Role]) -> bool:
        return self.role in roles


class SignInFailed(Exception):
    """A refused sign-in: the catalog ``key`` of the message and its parameters (translated by
    the page, in the event loop where the session's language is known)."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params

    def message(self) -> str:
        return i18n.t(self.key, **self.params)


def client_address() -> str | None:
    try:
        request = context.client.request
    except (RuntimeError, AttributeError):
        return None
    return request.client.host if request is not None and request.client else None


def _idle_s() -> float:
    return float(runtime.get().settings.session_idle_minutes * 60)


def _max_s() -> float:
    return float(runtime.get().settings.session_max_hours * 3600)


def sign_in(username: str, password: str, client: str | None) -> SessionUser:
    """Check the password (blocking: call off the event loop). Raises :class:`SignInFailed`."""
    if not username.strip() or not password:
        raise SignInFailed("signin.empty")
    rt = runtime.get()
    policy = throttle.policy(rt.settings)
    try:
        user = auth.authenticate(rt.db(), username.strip(), password, client=client, policy=policy)
    except Locked as exc:
        raise SignInFailed("signin.locked", minutes=exc.retry_after // 60 + 1) from None
    except auth.WrongCredentials as exc:
        if exc.attempts_left == 1:
            raise SignInFailed("signin.last_attempt") from None
        if exc.attempts_left == 0:  # this failure locked the account from this address
            minutes = rt.settings.login_lockout_minutes
            raise SignInFailed("signin.locked", minutes=minutes) from None
        raise SignInFailed("signin.wrong") from None
    except Unauthorized:
        raise SignInFailed("signin.wrong") from None
    return SessionUser(user.id, user.username, user.full_name, user.role, client)


def start(user: SessionUser) -> None:
    """Open the screen session for ``user`` (in the page's context)."""
    storage = app.storage.user
    storage[USER_ID] = user.user_id
    storage[STARTED] = time.time()
    storage[EXPIRES] = time.time() + _idle_s()
    storage.pop(EXPIRED, None)
    remembered = app.storage.general.get(f"lang:{user.user_id}")
    if remembered in i18n.languages():
        storage[i18n.SESSION_KEY] = remembered


def end() -> None:
    storage = app.storage.user
    for key in (USER_ID, EXPIRES, STARTED):
        storage.pop(key, None)


def set_language(code: str) -> None:
    """Language for this session, remembered for the signed-in account."""
    if code not in i18n.languages():
        return
    app.storage.user[i18n.SESSION_KEY] = code
    user_id = app.storage.user.get(USER_ID)
    if user_id:
        app.storage.general[f"lang:{user_id}"] = code


def current() -> SessionUser | None:
    """The signed-in, active user of this session, or None (expired, disabled, ended).
    Each call slides the expiry forward."""
    storage = app.storage.user
    user_id = storage.get(USER_ID)
    if not user_id:
        return None
    now = time.time()
    if float(storage.get(EXPIRES, 0)) < now or float(storage.get(STARTED, 0)) + _max_s() < now:
        end()
        storage[EXPIRED] = True
        return None
    db = runtime.get().db()
    user = auth.get_user(db, str(user_id))
    if user is None or not user.active:
        end()
        return None
    if not revocation.still_valid(db, user.id, float(storage.get(STARTED, 0))):
        end()  # its sessions were ended by an administrator or by the user elsewhere
        storage[EXPIRED] = True
        return None
    storage[EXPIRES] = now + _idle_s()
    return SessionUser(user.id, user.username, user.full_name, user.role, client_address())


def request_user_id(request: Request) -> str | None:
    """The user id of the unexpired screen session whose cookie ``request`` carries, for routes
    of the API app that accept the screen's sign-in (installed as ``app.state.session_user``).

    Those routes are outside NiceGUI's own app, so its session middleware has not run: the
    cookie is checked here the way Starlette's SessionMiddleware signs it (itsdangerous,
    the screen's cookie key, the session's absolute age limit), then the session's user
    storage is read with the same idle and absolute limits as :func:`current`. It does not
    slide the expiry: only the screen's own pages do."""
    cookie = request.cookies.get(SESSION_COOKIE)
    secret = getattr(request.app.state, "session_cookie_key", None)
    if not cookie or not secret:
        return None
    max_age = int(runtime.get().settings.session_max_hours * 3600)
    try:
        signed = TimestampSigner(str(secret)).unsign(cookie.encode(), max_age=max_age)
        session_id = json.loads(b64decode(signed)).get("id")
    except (BadSignature, ValueError, AttributeError):
        return None
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        return None
    users: dict[str, Any] = getattr(app.storage, "_users", {})
    storage = users.get(session_id)
    if storage is None:  # NiceGUI dropped it from memory once the screen's tab closed
        try:
            path = Storage.path / f"storage-user-{session_id}.json"
            storage = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(storage, dict):
            return None
    user_id = storage.get(USER_ID)
    now = time.time()
    if not user_id or float(storage.get(EXPIRES, 0)) < now:
        return None
    started = float(storage.get(STARTED, 0))
    if started + _max_s() < now:
        return None
    if not revocation.still_valid(runtime.get().db(), str(user_id), started):
        return None
    return str(user_id)


def require(roles: frozenset[Role]) -> SessionUser | None:
    """The current user if their role is in ``roles``; None otherwise (callers refuse)."""
    user = current()
    if user is None or not user.may(roles):
        return None
    return user
