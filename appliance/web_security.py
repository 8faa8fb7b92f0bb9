"""Security headers on every HTTP response of the API and the screen (one ASGI middleware).

- ``Content-Security-Policy`` (CSP Level 3): :data:`CSP_DIRECTIVES`, the one place to change it
  (``RADIANT_HTTP_CSP`` replaces it whole). NiceGUI builds its pages with Vue's template
  compiler and inline scripts, so ``script-src`` needs ``'unsafe-inline' 'unsafe-eval'``;
  everything else is same-origin only, and no site may frame the box.
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
  ``X-Frame-Options: DENY`` (for browsers without ``frame-ancestors``).
- Over TLS only: ``Strict-Transport-Security`` (RFC 6797 7.2: never over plain HTTP), and every
  ``Set-Cookie`` gets ``Secure`` (and ``HttpOnly`` when it lacks it).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP_DIRECTIVES: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "media-src": "'self' blob:",
    "worker-src": "'self' blob:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(override: str = "") -> str:
    """The CSP header value: ``override`` when given, else :data:`CSP_DIRECTIVES`."""
    if override.strip():
        return override.strip()
    return "; ".join(f"{name} {value}" for name, value in CSP_DIRECTIVES.items())


class SecurityHeaders:
    """Adds the headers above to every ``http`` response; websockets pass untouched."""

    def __init__(self, app: ASGIApp, *, csp: str = "", hsts_max_age_s: int = 31_536_000) -> None:
        self.app = app
        self.common: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", content_security_policy(csp).encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        self.hsts = (b"strict-transport-security", f"max-age={hsts_max_age_s}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                message["headers"] = self._headers(headers, secure)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _headers(
        self, headers: Iterable[tuple[bytes, bytes]], secure: bool
    ) -> list[tuple[bytes, bytes]]:
        names = {name for name, _ in self.common}
        if secure:
            names.add(self.hsts[0])
        out: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            lower = name.lower()
            if lower in names:
                continue  # ours replace any a route set
            if lower == b"set-cookie":
                value = harden_cookie(value, secure)
            out.append((name, value))
        out.extend(self.common)
        if secure:
            out.append(self.hsts)
        return out


def harden_cookie(value: bytes, secure: bool) -> bytes:
    """``HttpOnly`` always, ``Secure`` over TLS, ``SameSite=Strict`` unless one is set."""
    attributes = {part.strip().split(b"=")[0].lower() for part in value.split(b";")[1:]}
    if b"httponly" not in attributes:
        value += b"; HttpOnly"
    if secure and b"secure" not in attributes:
        value += b"; Secure"
    if b"samesite" not in attributes:
        value += b"; SameSite=Strict"
    return value
