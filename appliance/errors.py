"""Domain errors raised by services; the HTTP layer turns them into RFC 9457 problems."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of errors with a status, a short title and a human-readable detail."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(AppError):
    """A request that cannot be read (malformed body or parameters)."""


class NotAcceptable(AppError):
    status = 406
    title = "Not acceptable"


class PayloadTooLarge(AppError):
    status = 413
    title = "Upload too large"


class UnsupportedMediaType(AppError):
    status = 415
    title = "Unsupported media type"


class InvalidInput(AppError):
    status = 422
    title = "Invalid input"


class Unauthorized(AppError):
    status = 401
    title = "Not authenticated"


class Forbidden(AppError):
    status = 403
    title = "Forbidden"


class NotFound(AppError):
    status = 404
    title = "Not found"


class Conflict(AppError):
    status = 409
    title = "Conflict"


class Locked(AppError):
    """Too many failed attempts; ``retry_after`` seconds until the next try is accepted."""

    status = 429
    title = "Too many failed sign-in attempts"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
