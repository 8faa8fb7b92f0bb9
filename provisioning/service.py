"""First boot: validate the answers (or an enrollment bundle), write them where the settings are
read at start (``<data_dir>/provisioned.env``), create the first administrator, pin the fleet's
key, mark the box provisioned and audit it.

Everything is checked before anything is written. The writes then happen inside one database
transaction (administrator, mode, audit row): the settings file, the pinned fleet key and the
marker ``provisioned.json`` are renamed into place at its end, so a failure leaves neither a
half-provisioned database nor half the files. A provisioned box refuses another run unless it is
forced by an administrator's credentials. The settings take effect when the appliance (re)starts.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from appliance import __version__, tls
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.auth import service as auth
from appliance.auth.models import Role, UserCreate, check_password, check_username
from appliance.config import ENV_PREFIX, ConfigError, Mode, Settings
from appliance.db.connection import transaction
from appliance.db.rows import now_iso
from appliance.errors import AppError
from provisioning import device, envfile, signing
from provisioning.bucket import DEVICE_DOC, FleetBucket, for_box
from provisioning.models import (
    ANSWER_SETTINGS,
    BUNDLE_SETTINGS,
    ENROLLMENT_FORMAT,
    REMOTE_ANSWERS,
    SECRET_ANSWERS,
    Answers,
    ProvisionResult,
)
from sync.mode import set_mode
from sync.probe import Reach
from sync.rclone import RcloneError

MARKER_FILE = "provisioned.json"
_SETTING_TO_ANSWER = {field: answer for answer, field in ANSWER_SETTINGS.items()}


class ProvisionError(Exception):
    """A bad answer: ``field`` names it; the message is one line."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AlreadyProvisioned(Exception):
    """The box is provisioned and the run was not forced by an administrator."""


def marker_path(settings: Settings) -> Path:
    return settings.data_dir / MARKER_FILE


def is_provisioned(settings: Settings) -> bool:
    """True once ``radiant provision`` (or the first-boot screen) has completed on this box."""
    return marker_path(settings).is_file()


@dataclass(frozen=True)
class Validated:
    """Answers that passed every check, and the settings they become."""

    answers: Answers
    values: dict[str, str]  # Settings field -> value, for provisioned.env
    settings: Settings  # the settings the box will run with (answers over the current ones)
    fleet_key: Ed25519PublicKey | None


def _answer_name(field: str) -> str:
    return _SETTING_TO_ANSWER.get(field, f"{ENV_PREFIX}{field.upper()}")


def _message(error: Any) -> str:
    text = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    for answer, field in ANSWER_SETTINGS.items():
        text = text.replace(f"{ENV_PREFIX}{field.upper()}", answer)
    return text


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
    for name in ("site_name", "timezone", "language", "dicom_ae_title"):
        if isinstance(raw.get(name), str) and not raw[name].strip():
            raise ProvisionError(name, "must not be empty or all spaces")
    try:
        answers = Answers.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "answers"
        if err.get("type") == "missing":
            raise ProvisionError(field, "required") from None
        if err.get("type") == "extra_forbidden":
            raise ProvisionError(field, "unknown answer") from None
        raise ProvisionError(field, _message(err)) from None
    if any(ord(ch) < 32 for ch in answers.site_name):
        raise ProvisionError("site_name", "must not contain control characters")
    try:
        check_username(answers.admin_username)
    except ValueError as exc:
        raise ProvisionError("admin_username", str(exc)) from None
    if answers.language.lower() not in ("en", "fr"):
        raise ProvisionError("language", f"{answers.language!r} is not supported (en or fr)")
    fleet_key = None
    if answers.fleet_public_key:
        try:
            fleet_key = signing.parse_public(answers.fleet_public_key)
        except ValueError as exc:
            raise ProvisionError("fleet_public_key", str(exc)) from None
    mode = answers.mode or (Mode.ONLINE if answers.remote else Mode.OFFLINE)
    values: dict[str, str] = {}
    for answer, field in ANSWER_SETTINGS.items():
        value = getattr(answers, answer)
        if answer == "mode":
            value = mode.value
        if value is None or value == "":
            continue
        values[field] = str(value)
    for field, value in values.items():
        try:
            envfile.quote(value)
        except ValueError as exc:
            raise ProvisionError(_answer_name(field), str(exc)) from None
    # The box's settings with these answers: every rule of appliance.config applies.
    base = current.model_dump(exclude={name for name in ANSWER_SETTINGS.values()})
    try:
        candidate = Settings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "?"
        raise ProvisionError(_answer_name(field), _message(err)) from None
    return Validated(answers, values, candidate, fleet_key)


def provision_box(
    settings: Settings,
    raw: dict[str, Any],
    password: str,
    actor: Actor,
    *,
    force: bool = False,
    probe_remote: bool = True,
    bundle_sha256: str | None = None,
) -> ProvisionResult:
    """Check everything first (nothing is written, not even the data dir), then prepare the data
    dir and database and :func:`provision`."""
    from appliance.app import prepare

    already = is_provisioned(settings)
    if already and not force:
        raise AlreadyProvisioned(
            "this box is already provisioned; run again with --force and an administrator's "
            "credentials to change its answers"
        )
    checked = validate(raw, settings)
    if not already:
        try:
            check_password(password)
        except ValueError as exc:
            raise ProvisionError("admin_password", str(exc)) from None
    warnings: list[str] = []
    if checked.answers.remote and probe_remote:
        with tempfile.TemporaryDirectory(prefix="radiant-provision-") as scratch:
            warning = check_remote(checked.settings, Path(scratch))
        if warning:
            warnings.append(warning)
    ctx = prepare(settings)
    try:
        result = provision(
            settings,
            ctx.pool.get(),
            raw,
            password,
            actor,
            force=force,
            probe_remote=False,
            bundle_sha256=bundle_sha256,
        )
    finally:
        ctx.pool.close_all()
    return result.model_copy(update={"warnings": warnings + result.warnings})


def check_remote(candidate: Settings, scratch: Path) -> str | None:
    """Probe the bucket: a refusal or a missing bucket is a bad answer; an unreachable one only
    a warning (returned), since the clinic's network may come later."""
    # rclone's cache and config go to the scratch folder: nothing is written to the data dir.
    scratch_settings = candidate.model_copy(update={"data_dir": scratch / "data"})
    bucket = FleetBucket(scratch_settings, scratch).prepare()
    result = bucket.check()
    if result.reach is Reach.NO_BUCKET:
        raise ProvisionError("bucket", result.detail or "no such bucket")
    if result.reach is Reach.DENIED:
        field = "secret_key" if candidate.sync_remote == "s3" else "azure_key"
        raise ProvisionError(field, result.detail or "credentials refused")
    if not result.ok:
        return f"the bucket cannot be reached now ({result.detail}); the box registers later"
    return None


def provision(
    settings: Settings,
    db: sqlite_utils.Database,
    raw: dict[str, Any],
    password: str,
    actor: Actor,
    *,
    force: bool = False,
    probe_remote: bool = True,
    bundle_sha256: str | None = None,
) -> ProvisionResult:
    """Provision the box (see the module docstring). ``db`` is the box's migrated database."""
    already = is_provisioned(settings)
    if already and not force:
        raise AlreadyProvisioned(
            "this box is already provisioned; run again with --force and an administrator's "
            "credentials to change its answers"
        )
    checked = validate(raw, settings)
    answers = checked.answers
    warnings: list[str] = []
    if already:
        try:
            user = auth.authenticate(db, answers.admin_username, password, client="localhost")
        except AppError as exc:
            raise ProvisionError("admin_password", exc.detail) from None
        if user.role is not Role.ADMIN:
            raise ProvisionError("admin_username", f"{user.username} is not an administrator")
        actor = Actor(name=user.username, role=user.role.value, user_id=user.id, client="localhost")
        pinned = device.pinned_fleet_key(settings)
        if pinned is not None and checked.fleet_key is None:
            checked = Validated(answers, checked.values, checked.settings, pinned)
    else:
        try:
            check_password(password)
        except ValueError as exc:
            raise ProvisionError("admin_password", str(exc)) from None
        if db.execute(
            "SELECT 1 FROM users WHERE username = ?", (answers.admin_username,)
        ).fetchone():
            raise ProvisionError("admin_username", f"{answers.admin_username!r} is already taken")
    if answers.remote and probe_remote:
        with tempfile.TemporaryDirectory(prefix="radiant-provision-") as scratch:
            warning = check_remote(checked.settings, Path(scratch))
        if warning:
            warnings.append(warning)

    # Everything is valid: identity and TLS certificate first (idempotent), then the writes.
    ident = device.identity(settings)
    try:
        cert_path, _ = tls.ensure_box_certificate(checked.settings)
    except (ConfigError, tls.CertificateError) as exc:
        raise ProvisionError("tls_cert", str(exc).removeprefix("configuration error: ")) from None
    header = (
        f"Written by `radiant provision` on {now_iso()} (RadiantAI {__version__}).\n"
        "Read at start-up below the environment; 0600: it holds the bucket's credentials.\n"
        "Change it with `radiant provision --force` (an administrator's credentials)."
    )
    env_text = envfile.render(checked.values, header)
    mode = Mode(checked.values["mode"])
    marker = {
        "device_id": ident.device_id,
        "device_name": answers.device_name,
        "provisioned_at": now_iso(),
        "by": actor.name,
        "version": __version__,
        "fleet_key": signing.fingerprint(checked.fleet_key) if checked.fleet_key else None,
        "bundle_sha256": bundle_sha256,
    }
    env_path = settings.data_dir / envfile.PROVISIONED_ENV
    try:
        _commit(
            settings, db, checked, password, actor, already, mode, env_text, marker, bundle_sha256
        )
    except BaseException:
        if not already:  # a first run leaves nothing behind
            for path in (env_path, device.fleet_key_path(settings), marker_path(settings)):
                path.unlink(missing_ok=True)
        raise
    registered = False
    if answers.remote:
        try:
            register(checked.settings, answers.device_name)
            registered = True
        except (RcloneError, OSError) as exc:
            warnings.append(f"not registered in the bucket yet ({exc}); the box retries online")
    return ProvisionResult(
        device_id=ident.device_id,
        device_name=answers.device_name,
        public_key=ident.public_key,
        site_name=answers.site_name,
        admin_username=answers.admin_username,
        mode=mode,
        remote=answers.remote,
        fleet_key_fingerprint=marker["fleet_key"],
        registered=registered,
        warnings=warnings,
        tls_fingerprint=tls.fingerprint_sha256(cert_path),
    )


def _commit(
    settings: Settings,
    db: sqlite_utils.Database,
    checked: Validated,
    password: str,
    actor: Actor,
    already: bool,
    mode: Mode,
    env_text: str,
    marker: dict[str, Any],
    bundle_sha256: str | None,
) -> None:
    """The writes: one transaction; the files are renamed into place before it commits."""
    answers = checked.answers
    env_path = settings.data_dir / envfile.PROVISIONED_ENV
    with transaction(db):
        if not already:
            auth.create_user(
                db,
                UserCreate(
                    username=answers.admin_username,
                    password=password,
                    role=Role.ADMIN,
                    full_name=answers.admin_full_name,
                ),
                actor,
            )
        set_mode(db, settings, mode, actor)
        audit.record(
            db,
            actor,
            "device.provision",
            object_type="device",
            object_id=str(marker["device_id"]),
            detail={
                "forced": already,
                "remote": answers.remote or None,
                "mode": mode.value,
                "fleet_key": marker["fleet_key"],
                "bundle_sha256": bundle_sha256,
                "settings": sorted(
                    _answer_name(f) for f in checked.values if f not in _secret_fields()
                ),
            },
        )
        envfile.write(env_path, env_text)
        if checked.fleet_key is not None:
            device.pin_fleet_key(settings, checked.fleet_key)
        signing.write_atomic(
            marker_path(settings), (json.dumps(marker, indent=2) + "\n").encode("utf-8")
        )


def _secret_fields() -> frozenset[str]:
    return frozenset(ANSWER_SETTINGS[a] for a in SECRET_ANSWERS)


def device_document(settings: Settings, device_name: str | None) -> dict[str, Any]:
    """``device.json``: who the box is, signed by its own key."""
    key = device.ensure_device_key(settings)
    ident = device.identity(settings)
    body = {
        "format": "radiant-device/1",
        "device_id": ident.device_id,
        "device_name": device_name,
        "site_name": settings.site_name,
        "public_key": ident.public_key,
        "registered_at": now_iso(),
        "version": __version__,
    }
    return signing.sign(body, key)


def register(settings: Settings, device_name: str | None = None) -> None:
    """Write ``fleet/devices/<id>/device.json`` to the bucket (RcloneError when it fails)."""
    name = device_name
    if name is None:
        name = read_marker(settings).get("device_name")
    document = device_document(settings, name)
    for_box(settings).put_json(document["device_id"], DEVICE_DOC, document)


def read_marker(settings: Settings) -> dict[str, Any]:
    try:
        value = json.loads(marker_path(settings).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
