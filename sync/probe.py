"""Is the bucket there? One cheap listing of this box's folder decides the sync worker's
online/offline state, and says clearly why not: unreachable, no such bucket, or credentials
refused."""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass

from appliance.config import Settings
from sync.rclone import EXIT_DIR_NOT_FOUND, Rclone, RcloneError, short_error

_DENIED = re.compile(
    r"\b403\b|SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied|AuthenticationFailed|"
    r"AuthorizationFailure|InvalidAuthenticationInfo",
)


class Reach(enum.StrEnum):
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    NO_BUCKET = "no_bucket"
    DENIED = "denied"


@dataclass(frozen=True)
class ProbeResult:
    reach: Reach
    detail: str | None
    at: float  # time.time()

    @property
    def ok(self) -> bool:
        return self.reach is Reach.REACHABLE


def where(settings: Settings) -> str:
    """Human name of the remote: ``s3 bucket 'b' at https://...``."""
    kind = "S3 bucket" if settings.sync_remote == "s3" else "Azure container"
    place = settings.sync_endpoint or (
        "AWS" if settings.sync_remote == "s3" else f"account {settings.sync_azure_account}"
    )
    return f"{kind} {settings.sync_bucket!r} at {place}"


def probe(settings: Settings, rclone: Rclone) -> ProbeResult:
    """List ``<bucket>/<prefix>`` one level deep and classify the outcome."""
    now = time.time()
    try:
        result = rclone.probe()
    except RcloneError as exc:
        return ProbeResult(Reach.UNREACHABLE, exc.detail, now)
    if result.returncode == 0:
        return ProbeResult(Reach.REACHABLE, None, now)
    stderr = result.stderr or ""
    if result.returncode == EXIT_DIR_NOT_FOUND:
        return ProbeResult(
            Reach.NO_BUCKET,
            f"{where(settings)} does not exist: create it (the appliance never creates buckets)",
            now,
        )
    if _DENIED.search(stderr):
        keys = (
            "RADIANT_SYNC_ACCESS_KEY/RADIANT_SYNC_SECRET_KEY"
            if settings.sync_remote == "s3"
            else "RADIANT_SYNC_AZURE_ACCOUNT/RADIANT_SYNC_AZURE_KEY"
        )
        return ProbeResult(Reach.DENIED, f"{where(settings)} refused the credentials ({keys})", now)
    detail = short_error(stderr) or f"rclone exit {result.returncode}"
    return ProbeResult(Reach.UNREACHABLE, f"{where(settings)} unreachable: {detail}", now)
