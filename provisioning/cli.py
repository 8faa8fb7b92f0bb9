"""``radiant provision``, ``radiant device show`` and ``radiant fleet ...``: added to the
``radiant`` parser by :func:`add_commands`.

Errors are one line on stderr: exit 2 for a bad answer or usage (naming the field), 1 for a
refused operation (already provisioned, bucket unreachable, unknown device).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, _cli_actor, _settings
from appliance.config import Mode, Settings, load_settings

DataDirOption = Callable[[argparse.ArgumentParser], None]
# answer -> flag of `radiant provision` (dest is the answer's name)
_ANSWER_FLAGS = {
    "site_name": "--site-name",
    "timezone": "--timezone",
    "language": "--language",
    "admin_username": "--admin-username",
    "admin_full_name": "--admin-full-name",
    "dicom_ae_title": "--ae-title",
    "dicom_port": "--dicom-port",
    "mode": "--mode",
    "remote": "--remote",
    "bucket": "--bucket",
    "prefix": "--prefix",
    "endpoint": "--endpoint",
    "region": "--region",
    "access_key": "--access-key",
    "azure_account": "--azure-account",
    "inference_endpoint": "--inference-endpoint",
    "device_name": "--device-name",
    "fleet_public_key": "--fleet-public-key",
}
_SECRET_FLAGS = {"secret_key": "--secret-key-file", "azure_key": "--azure-key-file"}
DEFAULT_FLEET_KEY = "fleet_key.pem"


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"radiant: {message}", file=sys.stderr)
    return code


def _read_secret_file(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise _Usage(f"{field}: cannot read {path} ({reason})") from None


class _Usage(Exception):
    """Bad input on the command line (exit 2)."""


def _provision_answers(
    args: argparse.Namespace, settings: Settings
) -> tuple[dict[str, Any], str | None]:
    from provisioning import device, service

    raw: dict[str, Any] = {}
    bundle_sha = None
    if args.bundle is not None:
        try:
            data = args.bundle.read_bytes()
        except OSError as exc:
            raise service.ProvisionError(
                "bundle", f"cannot read {args.bundle} ({exc.strerror})"
            ) from None
        bundle_sha = hashlib.sha256(data).hexdigest()
        pinned = device.pinned_fleet_key(settings) if service.is_provisioned(settings) else None
        raw.update(
            service.read_bundle(
                data, expected_fingerprint=args.fleet_key_fingerprint, pinned=pinned
            )
        )
    if args.answers is not None:
        try:
            loaded = json.loads(args.answers.read_text(encoding="utf-8"))
        except OSError as exc:
            raise service.ProvisionError(
                "answers", f"cannot read {args.answers} ({exc.strerror})"
            ) from None
        except (UnicodeDecodeError, ValueError):
            raise service.ProvisionError("answers", f"{args.answers} is not a JSON file") from None
        if not isinstance(loaded, dict):
            raise service.ProvisionError("answers", f"{args.answers} must hold a JSON object")
        for forbidden in ("admin_password", "password"):
            if forbidden in loaded:
                raise service.ProvisionError(
                    forbidden, "never in the answers file: use --admin-password-stdin or -file"
                )
        raw.update(loaded)
    for answer in _ANSWER_FLAGS:
        value = getattr(args, answer, None)
        if value is not None:
            raw[answer] = value
    for answer in _SECRET_FLAGS:
        path = getattr(args, answer, None)
        if path is not None:
            raw[answer] = _read_secret_file(path, answer)
    return raw, bundle_sha


def _password(args: argparse.Namespace) -> str:
    if args.admin_password_stdin and args.admin_password_file is not None:
        raise _Usage(
            "admin_password: give --admin-password-stdin or --admin-password-file, not both"
        )
    if args.admin_password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if args.admin_password_file is not None:
        text = _read_secret_file(args.admin_password_file, "admin_password")
        return text.splitlines()[0] if text else ""
    raise _Usage("admin_password: required (--admin-password-stdin or --admin-password-file)")


def cmd_provision(args: argparse.Namespace) -> int:
    """First boot: validate every answer, then write them, create the admin, mark the box."""
    from provisioning import service

    settings = _settings(args)
    if service.is_provisioned(settings) and not args.force:
        return _fail(
            "this box is already provisioned; run again with --force and an administrator's "
            "credentials (--admin-username and the password) to change its answers"
        )
    try:
        raw, bundle_sha = _provision_answers(args, settings)
        password = _password(args)
        result = service.provision_box(
            settings,
            raw,
            password,
            _cli_actor(),
            force=args.force,
            probe_remote=not args.no_remote_check,
            bundle_sha256=bundle_sha,
        )
    except (service.ProvisionError, _Usage) as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except service.AlreadyProvisioned as exc:
        return _fail(str(exc))
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"provisioned {result.device_id}"
        + (f" ({result.device_name})" if result.device_name else "")
    )
    print(
        f"site: {result.site_name}; administrator: {result.admin_username}; "
        f"mode: {result.mode.value}"
    )
    print(f"device public key: {result.public_key}")
    if result.tls_fingerprint:
        print(f"TLS certificate sha256 fingerprint: {result.tls_fingerprint}")
    if result.remote:
        where = "registered in the bucket" if result.registered else "not registered yet"
        print(f"remote: {result.remote}, {where}")
    if result.fleet_key_fingerprint:
        print(f"fleet key pinned: {result.fleet_key_fingerprint}")
    print("the settings take effect when the appliance (re)starts")
    return EXIT_OK


def cmd_device_show(args: argparse.Namespace) -> int:
    from appliance import tls
    from appliance.config import prepare_data_dir
    from provisioning import device, service, signing

    settings = _settings(args)
    prepare_data_dir(settings)
    ident = device.identity(settings)
    fleet_key = device.pinned_fleet_key(settings)
    paths = tls.certificate_paths(settings)
    tls_fingerprint = tls.fingerprint_sha256(paths[0]) if paths else None
    if args.json:
        print(
            json.dumps(
                {
                    "device_id": ident.device_id,
                    "public_key": ident.public_key,
                    "fingerprint": ident.fingerprint,
                    "provisioned": service.is_provisioned(settings),
                    "fleet_key": signing.fingerprint(fleet_key) if fleet_key else None,
                    "tls_fingerprint": tls_fingerprint,
                },
                indent=2,
            )
        )
        return EXIT_OK
    print(f"device id: {ident.device_id}")
    print(f"public key: {ident.public_key}")
    print(f"fingerprint: {ident.fingerprint}")
    print(f"provisioned: {'yes' if service.is_provisioned(settings) else 'no'}")
    print(f"fleet key: {signing.fingerprint(fleet_key) if fleet_key else 'none pinned'}")
    print(f"TLS certificate sha256 fingerprint: {tls_fingerprint or 'none yet'}")
    return EXIT_OK


# --- radiant fleet --------------------------------------------------------------------------


def _remote_overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {
        "sync_remote": args.remote,
        "sync_bucket": args.bucket,
        "sync_endpoint": args.endpoint,
        "sync_region": args.region,
        "sync_access_key": args.access_key,
        "sync_azure_account": args.azure_account,
    }
    if args.secret_key_file is not None:
        values["sync_secret_key"] = _read_secret_file(args.secret_key_file, "secret_key")
    if args.azure_key_file is not None:
        values["sync_azure_key"] = _read_secret_file(args.azure_key_file, "azure_key")
    return values


@contextmanager
def _fleet_bucket(args: argparse.Namespace) -> Iterator[Any]:
    from provisioning.bucket import FleetBucket

    with tempfile.TemporaryDirectory(prefix="radiant-fleet-") as scratch:
        settings = load_settings(data_dir=Path(scratch) / "work", **_remote_overrides(args))
        if not settings.sync_remote:
            raise _Usage("remote: set --remote (s3 or azure) or RADIANT_SYNC_REMOTE")
        bucket = FleetBucket(settings, Path(scratch) / "rclone").prepare()
        result = bucket.check()
        if not result.ok:
            raise _Refused(result.detail or "the bucket cannot be reached")
        yield bucket


class _Refused(Exception):
    """The operation could not be done (exit 1)."""


def _fleet_key(args: argparse.Namespace) -> Any:
    from provisioning import signing

    path = Path(args.key or os.environ.get("RADIANT_FLEET_KEY") or DEFAULT_FLEET_KEY)
    try:
        return signing.load_private_key(path)
    except signing.KeyFileError as exc:
        raise _Usage(f"key: {exc} (create one with `radiant fleet keygen`)") from None


def _run_fleet(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapped(args: argparse.Namespace) -> int:
        from provisioning.desired import DesiredError
        from provisioning.fleet import FleetError
        from sync.rclone import RcloneError

        try:
            return func(args)
        except (_Usage, DesiredError) as exc:
            return _fail(str(exc), EXIT_CONFIG)
        except (_Refused, FleetError, RcloneError) as exc:
            return _fail(str(exc))

    return wrapped


def cmd_fleet_keygen(args: argparse.Namespace) -> int:
    from provisioning.fleet import keygen

    private = Path(args.out)
    public = private.with_suffix(".pub")
    fingerprint = keygen(private, public)
    print(f"fleet key: {private} (private, 0600: keep it off the boxes), {public} (public)")
    print(f"fingerprint: {fingerprint}")
    return EXIT_OK


def cmd_fleet_enroll_bundle(args: argparse.Namespace) -> int:
    from provisioning import service
    from provisioning.fleet import enroll_bundle, remote_answers
    from provisioning.signing import fingerprint, write_atomic

    key = _fleet_key(args)
    preset = {
        "site_name": args.site_name,
        "timezone": args.timezone,
        "language": args.language,
        "dicom_ae_title": args.ae_title,
        "dicom_port": args.dicom_port,
        "mode": args.mode,
        "inference_endpoint": args.inference_endpoint,
        "admin_username": args.admin_username,
    }
    preset = {k: v for k, v in preset.items() if v is not None}
    with tempfile.TemporaryDirectory(prefix="radiant-fleet-") as scratch:
        settings = load_settings(data_dir=Path(scratch) / "work", **_remote_overrides(args))
        # The pre-filled answers must pass the box's own checks.
        sample = {"site_name": "x", "admin_username": "admin", **preset}
        try:
            service.validate({**sample, **remote_answers(settings)}, settings)
        except service.ProvisionError as exc:
            raise _Usage(str(exc)) from None
        bundle = enroll_bundle(key, args.device_name, settings, preset)
    out = Path(args.out)
    text = json.dumps(bundle, indent=2, sort_keys=True) + "\n"
    try:
        write_atomic(out, text.encode("utf-8"), mode=0o600, replace=False)
    except FileExistsError:
        raise _Usage(f"out: {out} exists") from None
    print(f"wrote {out} (0600: it holds the bucket's credentials; delete it after first boot)")
    print(f"device name: {args.device_name}; fleet key {fingerprint(key.public_key())}")
    return EXIT_OK


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _row(view: Any, now: datetime, stale_s: float) -> dict[str, Any]:
    status = view.status or {}
    age = view.age_s(now)
    desired_state = status.get("desired_state") or {}
    flags = []
    if age is None or age > stale_s:
        flags.append("STALE")
    if view.problems:
        flags.append("PROBLEM")
    return {
        "device_id": view.device_id,
        "name": view.name,
        "mode": status.get("mode"),
        "version": status.get("version"),
        "age_s": round(age, 1) if age is not None else None,
        "stale": age is None or age > stale_s,
        "desired": desired_state.get("state"),
        "desired_serial": desired_state.get("serial"),
        "last_error": status.get("last_error"),
        "problems": view.problems,
        "flags": flags,
    }


def cmd_fleet_list(args: argparse.Namespace) -> int:
    from provisioning.fleet import devices

    stale_s = args.stale_after or load_settings(data_dir=Path(tempfile.gettempdir())).fleet_stale_s
    with _fleet_bucket(args) as bucket:
        views = devices(bucket)
    now = datetime.now(UTC)
    rows = [_row(v, now, stale_s) for v in views]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no devices in the bucket yet")
        return EXIT_OK
    print(f"{'DEVICE':<20} {'NAME':<20} {'MODE':<8} {'AGE':>6}  {'DESIRED':<14} FLAGS")
    for r in rows:
        desired_text = f"{r['desired'] or '-'}" + (
            f" #{r['desired_serial']}" if r["desired_serial"] else ""
        )
        print(
            f"{r['device_id']:<20} {(r['name'] or '-'):<20} {(r['mode'] or '-'):<8} "
            f"{_age(r['age_s']):>6}  {desired_text:<14} {' '.join(r['flags']) or 'ok'}"
        )
    return EXIT_OK


def cmd_fleet_show(args: argparse.Namespace) -> int:
    from provisioning.fleet import find

    with _fleet_bucket(args) as bucket:
        view = find(bucket, args.device)
    print(
        json.dumps(
            {
                "device_id": view.device_id,
                "device": view.device,
                "status": view.status,
                "desired": view.desired,
                "problems": view.problems,
            },
            indent=2,
            sort_keys=True,
        )
    )
    return EXIT_OK


def cmd_fleet_set(args: argparse.Namespace) -> int:
    from provisioning.desired import parse_assignments
    from provisioning.fleet import set_desired
    from provisioning.signing import document_sha256

    values = parse_assignments(args.assignments)
    if not values:
        raise _Usage("give at least one key=value")
    key = _fleet_key(args)
    with _fleet_bucket(args) as bucket:
        document = set_desired(bucket, key, args.device, values)
    print(
        f"wrote desired.json for {document['device_id']}: serial {document['serial']}, "
        f"sha256 {document_sha256(document)}"
    )
    print(f"settings: {json.dumps(document['settings'], sort_keys=True)}")
    return EXIT_OK


def _remote_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("bucket (default: the RADIANT_SYNC_* variables)")
    g.add_argument("--remote", choices=["s3", "azure"], help="RADIANT_SYNC_REMOTE")
    g.add_argument("--bucket", help="bucket or container (RADIANT_SYNC_BUCKET)")
    g.add_argument("--endpoint", help="endpoint URL (RADIANT_SYNC_ENDPOINT)")
    g.add_argument("--region", help="S3 region (RADIANT_SYNC_REGION)")
    g.add_argument("--access-key", help="S3 access key id (RADIANT_SYNC_ACCESS_KEY)")
    g.add_argument("--secret-key-file", type=Path, help="file holding the S3 secret key")
    g.add_argument("--azure-account", help="Azure storage account (RADIANT_SYNC_AZURE_ACCOUNT)")
    g.add_argument("--azure-key-file", type=Path, help="file holding the Azure account key")


def _key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key",
        help=f"the fleet's private key (RADIANT_FLEET_KEY, default ./{DEFAULT_FLEET_KEY})",
    )


def add_commands(sub: argparse._SubParsersAction, data_dir_option: DataDirOption) -> None:  # type: ignore[type-arg]
    """Add ``provision``, ``device`` and ``fleet`` to the ``radiant`` parser."""
    prov = sub.add_parser("provision", help="first boot: site, administrator, DICOM, bucket, AI")
    prov.add_argument("--answers", type=Path, metavar="FILE.json", help="answers as JSON")
    prov.add_argument("--bundle", type=Path, metavar="FILE", help="an enrollment bundle")
    prov.add_argument(
        "--fleet-key-fingerprint",
        metavar="sha256:...",
        help="refuse a bundle not signed by this fleet key (printed by `radiant fleet keygen`)",
    )
    for answer, flag in _ANSWER_FLAGS.items():
        prov.add_argument(flag, dest=answer, metavar=answer.upper())
    for answer, flag in _SECRET_FLAGS.items():
        prov.add_argument(flag, dest=answer, type=Path, metavar="FILE")
    prov.add_argument("--admin-password-stdin", action="store_true", help="read it from stdin")
    prov.add_argument("--admin-password-file", type=Path, metavar="FILE")
    prov.add_argument(
        "--force",
        action="store_true",
        help="provision again (needs an administrator's username and password)",
    )
    prov.add_argument(
        "--no-remote-check", action="store_true", help="do not contact the bucket now"
    )
    data_dir_option(prov)
    prov.set_defaults(func=cmd_provision)

    dev = sub.add_parser("device", help="this box's identity").add_subparsers(
        dest="device_command", required=True, metavar="ACTION"
    )
    show = dev.add_parser("show", help="device id and public key")
    show.add_argument("--json", action="store_true")
    data_dir_option(show)
    show.set_defaults(func=cmd_device_show)

    fleet = sub.add_parser("fleet", help="hospital IT: keys, bundles, boxes").add_subparsers(
        dest="fleet_command", required=True, metavar="ACTION"
    )
    keygen = fleet.add_parser("keygen", help="create the fleet key pair")
    keygen.add_argument("--out", default=DEFAULT_FLEET_KEY, help="private key file (.pub beside)")
    keygen.set_defaults(func=_run_fleet(cmd_fleet_keygen))

    bundle = fleet.add_parser("enroll-bundle", help="a signed bundle for a box's first boot")
    bundle.add_argument("--device-name", required=True)
    bundle.add_argument("--out", required=True, metavar="FILE")
    bundle.add_argument("--site-name")
    bundle.add_argument("--timezone")
    bundle.add_argument("--language")
    bundle.add_argument("--ae-title")
    bundle.add_argument("--dicom-port")
    bundle.add_argument("--mode", choices=[m.value for m in Mode])
    bundle.add_argument("--inference-endpoint")
    bundle.add_argument("--admin-username")
    _key_option(bundle)
    _remote_options(bundle)
    bundle.set_defaults(func=_run_fleet(cmd_fleet_enroll_bundle))

    lst = fleet.add_parser("list", help="every box, its last status age (STALE when old)")
    lst.add_argument("--stale-after", type=float, metavar="S", help="RADIANT_FLEET_STALE_S")
    lst.add_argument("--json", action="store_true")
    _remote_options(lst)
    lst.set_defaults(func=_run_fleet(cmd_fleet_list))

    fshow = fleet.add_parser("show", help="a box's device, status and desired documents")
    fshow.add_argument("device", metavar="DEVICE", help="device id or name")
    _remote_options(fshow)
    fshow.set_defaults(func=_run_fleet(cmd_fleet_show))

    fset = fleet.add_parser("set", help="write a box's signed desired.json (serial + 1)")
    fset.add_argument("device", metavar="DEVICE", help="device id or name")
    fset.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    _key_option(fset)
    _remote_options(fset)
    fset.set_defaults(func=_run_fleet(cmd_fleet_set))

    from provisioning.update.cli import add_commands as add_update_commands

    add_update_commands(sub, fleet, data_dir_option, _remote_options, _key_option, _run_fleet)
