"""``radiant provision``, ``radiant device show`` and ``radiant fleet ...``: added to the
``radiant`` parser by :func:`add_commands`.

Errors are one line on stderr: exit 2 for a bad answer or usage (naming the field), 1 for a
refused operation (already provisioned, bucket unreachable, unknown device).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from appliance.config import Settings
from radiant.common import (
    EXIT_CONFIG,
    EXIT_OK,
    DataDirOption,
    cli_actor,
    cli_settings,
    fail,
)

# answer -> flag of `radiant provision` (dest is the answer's name)
_ANSWER_FLAGS = {
    "site_name": "--site-name",
    "timezone": "--timezone",
    "language": "--language",
    "report_language": "--report-language",
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


def read_secret_file(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise Usage(f"{field}: cannot read {path} ({reason})") from None


class Usage(Exception):
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
            raw[answer] = read_secret_file(path, answer)
    return raw, bundle_sha


def _password(args: argparse.Namespace) -> str:
    if args.admin_password_stdin and args.admin_password_file is not None:
        raise Usage(
            "admin_password: give --admin-password-stdin or --admin-password-file, not both"
        )
    if args.admin_password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if args.admin_password_file is not None:
        text = read_secret_file(args.admin_password_file, "admin_password")
        return text.splitlines()[0] if text else ""
    raise Usage("admin_password: required (--admin-password-stdin or --admin-password-file)")


def cmd_provision(args: argparse.Namespace) -> int:
    """First boot: validate every answer, then write them, create the admin, mark the box."""
    from provisioning import service

    settings = cli_settings(args)
    if service.is_provisioned(settings) and not args.force:
        return fail(
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
            cli_actor(),
            force=args.force,
            probe_remote=not args.no_remote_check,
            bundle_sha256=bundle_sha,
        )
    except (service.ProvisionError, Usage) as exc:
        return fail(str(exc), EXIT_CONFIG)
    except service.AlreadyProvisioned as exc:
        return fail(str(exc))
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

    settings = cli_settings(args)
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


def add_commands(sub: argparse._SubParsersAction, data_dir_option: DataDirOption) -> None:  # type: ignore[type-arg]
    """Add ``provision`` and ``device`` to the ``radiant`` parser."""
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
