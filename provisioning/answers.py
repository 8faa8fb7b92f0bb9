"""First-boot answers: reading a signed enrollment bundle and validating the answers into the
settings the box will run with; ProvisionError names the first bad answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from appliance.auth.models import check_username
from appliance.config import ENV_PREFIX, Mode, Settings
from provisioning import envfile, signing
from provisioning.models import (
    ANSWER_SETTINGS,
    BUNDLE_SETTINGS,
    ENROLLMENT_FORMAT,
    REMOTE_ANSWERS,
    SECRET_ANSWERS,
    Answers,
)

_SETTING_TO_ANSWER = {field: answer for answer, field in ANSWER_SETTINGS.items()}


class ProvisionError(Exception):
    """A bad answer: ``field`` names it; the message is one line."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Validated:
    """Answers that passed every check, and the settings they become."""

    answers: Answers
    values: dict[str, str]  # Settings field -> value, for provisioned.env
    settings: Settings  # the settings the box will run with (answers over the current ones)
    fleet_key: Ed25519PublicKey | None


def answer_name(field: str) -> str:
    """The answer (or ``RADIANT_*`` variable) a settings field comes from, for messages."""
    return _SETTING_TO_ANSWER.get(field, f"{ENV_PREFIX}{field.upper()}")


def _message(error: Any) -> str:
    text = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    for answer, field in ANSWER_SETTINGS.items():
        text = text.replace(f"{ENV_PREFIX}{field.upper()}", answer)
    return text


def secret_fields() -> frozenset[str]:
    return frozenset(ANSWER_SETTINGS[a] for a in SECRET_ANSWERS)


def read_bundle(
    data: bytes, *, expected_fingerprint: str | None = None, pinned: Ed25519PublicKey | None = None
) -> dict[str, Any]:
    """The answers an enrollment bundle pre-fills (its signature checked); ProvisionError with
    field ``bundle`` when it is corrupt, altered, or signed by another key than expected."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProvisionError(
            "bundle", "not a JSON enrollment bundle (corrupt or truncated)"
        ) from None
    if not isinstance(document, dict) or document.get("format") != ENROLLMENT_FORMAT:
        raise ProvisionError("bundle", f"not an enrollment bundle (format {ENROLLMENT_FORMAT})")
    try:
        key = signing.parse_public(str(document.get("fleet_public_key", "")))
    except ValueError as exc:
        raise ProvisionError("bundle", f"its fleet_public_key is unusable ({exc})") from None
    try:
        signing.verify(document, key)
    except signing.SignatureError as exc:
        raise ProvisionError("bundle", str(exc)) from None
    found = signing.fingerprint(key)
    if expected_fingerprint and expected_fingerprint.strip() != found:
        raise ProvisionError(
            "bundle", f"signed by fleet key {found}, not the expected {expected_fingerprint}"
        )
    if pinned is not None and signing.fingerprint(pinned) != found:
        raise ProvisionError(
            "bundle",
            f"signed by fleet key {found}, not the one this box pinned "
            f"({signing.fingerprint(pinned)})",
        )
    remote, preset = document.get("remote") or {}, document.get("settings") or {}
    if not isinstance(remote, dict) or not isinstance(preset, dict):
        raise ProvisionError("bundle", "remote and settings must be JSON objects")
    for name in remote:
        if name not in REMOTE_ANSWERS:
            raise ProvisionError("bundle", f"unknown remote field {name!r}")
    for name in preset:
        if name not in BUNDLE_SETTINGS:
            raise ProvisionError("bundle", f"unknown setting {name!r}")
    answers: dict[str, Any] = {**preset, **remote}
    answers["fleet_public_key"] = signing.public_text(key)
    if document.get("device_name"):
        answers["device_name"] = document["device_name"]
    return answers


def validate(raw: dict[str, Any], current: Settings) -> Validated:
    """Check every answer; ProvisionError names the first bad one."""
    answers = _parsed(raw)
    fleet_key = _checked(answers)
    values = _setting_values(answers)
    # The box's settings with these answers: every rule of appliance.config applies.
    base = current.model_dump(exclude={name for name in ANSWER_SETTINGS.values()})
    try:
        candidate = Settings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "?"
        raise ProvisionError(answer_name(field), _message(err)) from None
    return Validated(answers, values, candidate, fleet_key)


def _parsed(raw: dict[str, Any]) -> Answers:
    """The answers' shapes and types (no blank text fields, no unknown answers)."""
    for name in ("site_name", "timezone", "language", "report_language", "dicom_ae_title"):
        if isinstance(raw.get(name), str) and not raw[name].strip():
            raise ProvisionError(name, "must not be empty or all spaces")
    try:
        return Answers.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "answers"
        if err.get("type") == "missing":
            raise ProvisionError(field, "required") from None
        if err.get("type") == "extra_forbidden":
            raise ProvisionError(field, "unknown answer") from None
        raise ProvisionError(field, _message(err)) from None


def _checked(answers: Answers) -> Ed25519PublicKey | None:
    """The rules beyond the types: site name, administrator name, language, fleet key (returned)."""
    if any(ord(ch) < 32 for ch in answers.site_name):
        raise ProvisionError("site_name", "must not contain control characters")
    try:
        check_username(answers.admin_username)
    except ValueError as exc:
        raise ProvisionError("admin_username", str(exc)) from None
    if answers.language.lower() not in ("en", "fr"):
        raise ProvisionError("language", f"{answers.language!r} is not supported (en or fr)")
    report = answers.report_language
    if report is not None and report.lower() not in ("en", "fr"):
        raise ProvisionError("report_language", f"{report!r} is not supported (en or fr)")
    if not answers.fleet_public_key:
        return None
    try:
        return signing.parse_public(answers.fleet_public_key)
    except ValueError as exc:
        raise ProvisionError("fleet_public_key", str(exc)) from None


def _setting_values(answers: Answers) -> dict[str, str]:
    """Settings field -> value for ``provisioned.env``, each one quotable there."""
    mode = answers.mode or (Mode.ONLINE if answers.remote else Mode.OFFLINE)
    values: dict[str, str] = {}
    for answer, field in ANSWER_SETTINGS.items():
        value = getattr(answers, answer)
        if answer == "mode":
            value = mode.value
        if answer == "report_language" and not value:
            value = answers.language  # reports follow the screen language unless told
        if answer in ("language", "report_language"):
            value = str(value).lower()
        if value is None or value == "":
            continue
        values[field] = str(value)
    for field, value in values.items():
        try:
            envfile.quote(value)
        except ValueError as exc:
            raise ProvisionError(answer_name(field), str(exc)) from None
    return values
