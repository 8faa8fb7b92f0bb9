"""``radiant fleet keygen|enroll-bundle|list|show|set`` (hospital IT, against the fleet's
bucket); ``radiant fleet release`` is in :mod:`radiant.commands.update`."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import Mode, load_settings
from radiant.commands.provisioning import DEFAULT_FLEET_KEY, Usage, read_secret_file
from radiant.common import EXIT_CONFIG, EXIT_OK, DataDirOption, fail


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
        values["sync_secret_key"] = read_secret_file(args.secret_key_file, "secret_key")
    if args.azure_key_file is not None:
        values["sync_azure_key"] = read_secret_file(args.azure_key_file, "azure_key")
    return values


@contextmanager
def fleet_bucket(args: argparse.Namespace) -> Iterator[Any]:
    from provisioning.bucket import FleetBucket

    with tempfile.TemporaryDirectory(prefix="radiant-fleet-") as scratch:
        settings = load_settings(data_dir=Path(scratch) / "work", **_remote_overrides(args))
        if not settings.sync_remote:
            raise Usage("remote: set --remote (s3 or azure) or RADIANT_SYNC_REMOTE")
        bucket = FleetBucket(settings, Path(scratch) / "rclone").prepare()
        result = bucket.check()
        if not result.ok:
            raise _Refused(result.detail or "the bucket cannot be reached")
        yield bucket


class _Refused(Exception):
    """The operation could not be done (exit 1)."""


def fleet_key(args: argparse.Namespace) -> Any:
    from provisioning import signing

    path = Path(args.key or os.environ.get("RADIANT_FLEET_KEY") or DEFAULT_FLEET_KEY)
    try:
        return signing.load_private_key(path)
    except signing.KeyFileError as exc:
        raise Usage(f"key: {exc} (create one with `radiant fleet keygen`)") from None


def run_fleet(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapped(args: argparse.Namespace) -> int:
        from provisioning.desired import DesiredError
        from provisioning.fleet import FleetError
        from sync.rclone import RcloneError

        try:
            return func(args)
        except (Usage, DesiredError) as exc:
            return fail(str(exc), EXIT_CONFIG)
        except (_Refused, FleetError, RcloneError) as exc:
            return fail(str(exc))

    return wrapped


def cmdfleet_keygen(args: argparse.Namespace) -> int:
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

    key = fleet_key(args)
    preset = {
        "site_name": args.site_name,
        "timezone": args.timezone,
        "language": args.language,
        "report_language": args.report_language,
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
            raise Usage(str(exc)) from None
        bundle = enroll_bundle(key, args.device_name, settings, preset)
    out = Path(args.out)
    text = json.dumps(bundle, indent=2, sort_keys=True) + "\n"
    try:
        write_atomic(out, text.encode("utf-8"), mode=0o600, replace=False)
    except FileExistsError:
        raise Usage(f"out: {out} exists") from None
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
    with fleet_bucket(args) as bucket:
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

    with fleet_bucket(args) as bucket:
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
        raise Usage("give at least one key=value")
    key = fleet_key(args)
    with fleet_bucket(args) as bucket:
        document = set_desired(bucket, key, args.device, values)
    print(
        f"wrote desired.json for {document['device_id']}: serial {document['serial']}, "
        f"sha256 {document_sha256(document)}"
    )
    print(f"settings: {json.dumps(document['settings'], sort_keys=True)}")
    return EXIT_OK


def remote_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("bucket (default: the RADIANT_SYNC_* variables)")
    g.add_argument("--remote", choices=["s3", "azure"], help="RADIANT_SYNC_REMOTE")
    g.add_argument("--bucket", help="bucket or container (RADIANT_SYNC_BUCKET)")
    g.add_argument("--endpoint", help="endpoint URL (RADIANT_SYNC_ENDPOINT)")
    g.add_argument("--region", help="S3 region (RADIANT_SYNC_REGION)")
    g.add_argument("--access-key", help="S3 access key id (RADIANT_SYNC_ACCESS_KEY)")
    g.add_argument("--secret-key-file", type=Path, help="file holding the S3 secret key")
    g.add_argument("--azure-account", help="Azure storage account (RADIANT_SYNC_AZURE_ACCOUNT)")
    g.add_argument("--azure-key-file", type=Path, help="file holding the Azure account key")


def key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key",
        help=f"the fleet's private key (RADIANT_FLEET_KEY, default ./{DEFAULT_FLEET_KEY})",
    )


def add_commands(
    sub: argparse._SubParsersAction[Any], data_dir_option: DataDirOption
) -> argparse._SubParsersAction[Any]:
    """Add ``fleet`` to the ``radiant`` parser; returns its actions (``release`` joins them)."""
    fleet: argparse._SubParsersAction[Any]
    fleet = sub.add_parser("fleet", help="hospital IT: keys, bundles, boxes").add_subparsers(
        dest="fleet_command", required=True, metavar="ACTION"
    )
    keygen = fleet.add_parser("keygen", help="create the fleet key pair")
    keygen.add_argument("--out", default=DEFAULT_FLEET_KEY, help="private key file (.pub beside)")
    keygen.set_defaults(func=run_fleet(cmdfleet_keygen))

    bundle = fleet.add_parser("enroll-bundle", help="a signed bundle for a box's first boot")
    bundle.add_argument("--device-name", required=True)
    bundle.add_argument("--out", required=True, metavar="FILE")
    bundle.add_argument("--site-name")
    bundle.add_argument("--timezone")
    bundle.add_argument("--language")
    bundle.add_argument("--report-language")
    bundle.add_argument("--ae-title")
    bundle.add_argument("--dicom-port")
    bundle.add_argument("--mode", choices=[m.value for m in Mode])
    bundle.add_argument("--inference-endpoint")
    bundle.add_argument("--admin-username")
    key_option(bundle)
    remote_options(bundle)
    bundle.set_defaults(func=run_fleet(cmd_fleet_enroll_bundle))

    lst = fleet.add_parser("list", help="every box, its last status age (STALE when old)")
    lst.add_argument("--stale-after", type=float, metavar="S", help="RADIANT_FLEET_STALE_S")
    lst.add_argument("--json", action="store_true")
    remote_options(lst)
    lst.set_defaults(func=run_fleet(cmd_fleet_list))

    fshow = fleet.add_parser("show", help="a box's device, status and desired documents")
    fshow.add_argument("device", metavar="DEVICE", help="device id or name")
    remote_options(fshow)
    fshow.set_defaults(func=run_fleet(cmd_fleet_show))

    fset = fleet.add_parser("set", help="write a box's signed desired.json (serial + 1)")
    fset.add_argument("device", metavar="DEVICE", help="device id or name")
    fset.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    key_option(fset)
    remote_options(fset)
    fset.set_defaults(func=run_fleet(cmd_fleet_set))
    return fleet
