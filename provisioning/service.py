"""First boot: validate the answers (or an enrollment bundle), write them where the settings are
read at start (``<data_dir>/provisioned.env``), create the first administrator, pin the fleet's
key, mark the box provisioned and audit it.

Everything is checked before anything is written. The writes then happen inside one database
transaction (administrator, mode, audit row): the settings file, the pinned fleet key and the
marker ``provisioned.json`` are renamed into place at its end, so a failure leaves neither a
half-provisioned database nor half the files. A provisioned box refuses another run unless it is
forced by an administrator's credentials. The settings take effect when the appliance (re)starts.

The answers are checked in :mod:`provisioning.answers`; the marker and the bucket registration
live in :mod:`provisioning.marker`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance import __version__, tls
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.auth import service as auth
from appliance.auth.models import Role, UserCreate, check_password
from appliance.config import ConfigError, Mode, Settings
from appliance.db.connection import transaction
from appliance.db.rows import now_iso
from appliance.errors import AppError
from provisioning import device, envfile, signing
from provisioning.answers import (
    ProvisionError,
    Validated,
    answer_name,
    read_bundle,
    secret_fields,
    validate,
)
from provisioning.bucket import FleetBucket
from provisioning.marker import (
    MARKER_FILE,
    device_document,
    is_provisioned,
    marker_path,
    read_marker,
    register,
)
from provisioning.models import (
    ProvisionResult,
)
from sync.mode import set_mode
from sync.probe import Reach
from sync.rclone import RcloneError

__all__ = [
    "MARKER_FILE",
    "AlreadyProvisioned",
    "ProvisionError",
    "Validated",
    "check_remote",
    "device_document",
    "is_provisioned",
    "marker_path",
    "provision",
    "provision_box",
    "read_bundle",
    "read_marker",
    "register",
    "validate",
]



class AlreadyProvisioned(Exception):
    """The box is provisioned and the run was not forced by an administrator."""


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
    from appliance.context import prepare

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
        checked, actor = _administrator(settings, db, checked, password)
    else:
        _first_administrator(db, answers.admin_username, password)
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


def _administrator(
    settings: Settings, db: sqlite_utils.Database, checked: Validated, password: str
) -> tuple[Validated, Actor]:
    """A forced run: the answers' administrator signs in; the pinned fleet key is kept when the
    answers name none. Returns the answers and the administrator as the actor."""
    answers = checked.answers
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
    return checked, actor


def _first_administrator(db: sqlite_utils.Database, username: str, password: str) -> None:
    """A first run: the new administrator's password is strong enough and the name is free."""
    try:
        check_password(password)
    except ValueError as exc:
        raise ProvisionError("admin_password", str(exc)) from None
    if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
        raise ProvisionError("admin_username", f"{username!r} is already taken")


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
                    answer_name(f) for f in checked.values if f not in secret_fields()
                ),
            },
        )
        envfile.write(env_path, env_text)
        if checked.fleet_key is not None:
            device.pin_fleet_key(settings, checked.fleet_key)
        signing.write_atomic(
            marker_path(settings), (json.dumps(marker, indent=2) + "\n").encode("utf-8")
        )


