"""Desired state: the fleet's signed settings for one box (``fleet/devices/<id>/desired.json``).

Document (signed as :mod:`provisioning.signing` says, by the fleet key pinned at enrollment)::

    {"format": "radiant-desired/1", "device_id": "...", "serial": 7,
     "issued_at": "...", "settings": {"mode": "online", "retention_days": 30, ...},
     "signature": "..."}

``serial`` only grows: the box applies a document whose serial is above the last one it applied
(the same document again is a no-op), so an old document put back cannot roll a setting back.
``device_id`` binds the document to one box. ``settings`` is the complete desired state; its
keys are :data:`KEYS`. What takes effect when: ``mode`` at once (the runtime switch of
:mod:`sync.mode`); the AI keys, ``retention_days`` and ``evict_free_gb`` at once for the next
analysis or eviction round (unless the same variable is set in the box's environment, which
wins); all of them are also written to ``<data_dir>/fleet.env`` for the next start;
``software_channel`` is read at start (by the updater) only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from appliance.config import Mode, Settings, check_software_channel
from provisioning import signing

DESIRED_FORMAT = "radiant-desired/1"
# desired key -> Settings field (None: the runtime mode switch)
KEYS: dict[str, str | None] = {
    "mode": None,
    "inference_endpoint": "ai_online_endpoint",
    "ai_engine": "ai_engine",
    "ai_endpoint": "ai_endpoint",
    "ai_model": "ai_model",
    "ai_online_model": "ai_online_model",
    "ai_auto": "ai_auto",
    "ai_online_fallback": "ai_online_fallback",
    "retention_days": "retention_days",
    "evict_free_gb": "evict_free_gb",
    "software_channel": "software_channel",
}
AT_RESTART = frozenset({"software_channel"})
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class DesiredError(Exception):
    """A desired key or value is invalid (``key`` names it)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def _url(value: Any) -> str:
    url = str(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    return url


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false")


def _int(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        if not low <= number <= high:
            raise ValueError(f"must be {low}-{high}")
        return number

    return check


def _float(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError("must be a number") from None
        if not low <= number <= high:
            raise ValueError(f"must be {low:g}-{high:g}")
        return number

    return check


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text

    return check


def _model(value: Any) -> str:
    text = str(value).strip()
    if not _MODEL.fullmatch(text):
        raise ValueError("must be a model name (letters, digits, ._:/@+-)")
    return text


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "mode": _choice(*(m.value for m in Mode)),
    "inference_endpoint": _url,
    "ai_engine": _choice("transformers", "openai", "none"),
    "ai_endpoint": _url,
    "ai_model": _model,
    "ai_online_model": _model,
    "ai_auto": _bool,
    "ai_online_fallback": _bool,
    "retention_days": _int(0, 36_500),
    "evict_free_gb": _float(0, 100_000),
    "software_channel": check_software_channel,
}


def check_value(key: str, value: Any) -> Any:
    """The JSON value of one desired setting; DesiredError for an unknown key or bad value."""
    if key not in _CHECKS:
        raise DesiredError(key, f"unknown setting (known: {', '.join(sorted(_CHECKS))})")
    try:
        return _CHECKS[key](value)
    except ValueError as exc:
        raise DesiredError(key, str(exc)) from None


def check_settings(values: dict[str, Any]) -> dict[str, Any]:
    return {key: check_value(key, value) for key, value in values.items()}


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``key=value`` arguments of ``radiant fleet set``, checked."""
    values: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DesiredError(item, "expected key=value")
        values[key.strip()] = check_value(key.strip(), value)
    return values


def combined(settings: Settings, values: dict[str, Any]) -> Settings:
    """``settings`` with the desired values: every rule of appliance.config must still hold
    (e.g. ``ai_engine=openai`` needs an ``ai_endpoint``); DesiredError otherwise."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        field = KEYS.get(key)
        if field:
            changes[field] = value
    try:
        return Settings(_env_file=None, **{**settings.model_dump(), **changes})  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "?"
        key = next((k for k, f in KEYS.items() if f == field), field)
        raise DesiredError(
            key, str(err.get("msg", "invalid")).removeprefix("Value error, ")
        ) from None


def build(device_id: str, serial: int, values: dict[str, Any], issued_at: str) -> dict[str, Any]:
    return {
        "format": DESIRED_FORMAT,
        "device_id": device_id,
        "serial": serial,
        "issued_at": issued_at,
        "settings": check_settings(values),
    }


@dataclass(frozen=True)
class Verdict:
    """What the box does with a document: ``apply``, ``same`` (already applied) or ``reject``."""

    action: str
    sha256: str
    serial: int | None
    reason: str | None = None
    values: dict[str, Any] | None = None


def judge(
    document: dict[str, Any],
    *,
    device_id: str,
    fleet_key: Ed25519PublicKey | None,
    last_serial: int,
    last_sha256: str | None,
) -> Verdict:
    """Decide on a desired document (see the module docstring); never raises."""
    sha = signing.document_sha256(document)
    serial = document.get("serial")
    serial = serial if isinstance(serial, int) and not isinstance(serial, bool) else None

    def reject(reason: str) -> Verdict:
        return Verdict("reject", sha, serial, reason)

    if fleet_key is None:
        return reject("no fleet key pinned on this box (provision it with an enrollment bundle)")
    try:
        signing.verify(document, fleet_key)
    except signing.SignatureError as exc:
        return reject(str(exc))
    if document.get("format") != DESIRED_FORMAT:
        return reject(f"not a desired-state document (format {DESIRED_FORMAT})")
    if document.get("device_id") != device_id:
        return reject(f"issued for device {document.get('device_id')!r}, not this one")
    if serial is None or serial < 1:
        return reject("serial must be a positive whole number")
    if serial == last_serial and sha == last_sha256:
        return Verdict("same", sha, serial)
    if serial <= last_serial:
        return reject(f"replayed or stale: serial {serial} is not above {last_serial}, applied")
    values = document.get("settings")
    if not isinstance(values, dict):
        return reject("settings must be a JSON object")
    try:
        return Verdict("apply", sha, serial, values=check_settings(values))
    except DesiredError as exc:
        return reject(str(exc))


def env_values(values: dict[str, Any]) -> dict[str, str]:
    """The fleet.env lines of the accepted settings (all but ``mode``)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        field = KEYS.get(key)
        if field is None:
            continue
        out[field] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def dumps(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)
