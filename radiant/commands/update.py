"""``radiant fleet release build|publish`` (hospital IT) and ``radiant update run|status`` (the
box; run by radiant-update.timer as root)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radiant.commands.fleet import fleet_bucket, fleet_key
from radiant.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, cli_settings

Adder = Callable[[argparse.ArgumentParser], None]
Wrap = Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]


def cmd_release_build(args: argparse.Namespace) -> int:
    from provisioning.update.release import NO_DEPS, ReleaseError, build

    key = fleet_key(args)
    no_deps = NO_DEPS if args.no_deps is None else tuple(r for r in args.no_deps if r)
    try:
        document = build(
            Path(args.out), Path(args.wheels), args.version, args.channel, key, no_deps
        )
    except ReleaseError as exc:
        print(f"radiant: {exc}")
        return EXIT_CONFIG
    print(
        f"release {document['version']} ({document['channel']}): {len(document['files'])} "
        f"files, schema {document['schema_version']}, signed: {args.out}"
    )
    return EXIT_OK


def cmd_release_publish(args: argparse.Namespace) -> int:
    from provisioning.update.bucket import ReleaseBucket
    from provisioning.update.release import ReleaseError

    key = fleet_key(args)
    with fleet_bucket(args) as fleet:
        bucket = ReleaseBucket(fleet.settings, fleet.config_dir)
        bucket.prepare()
        try:
            release, channel = bucket.publish(Path(args.bundle), key)
        except ReleaseError as exc:
            print(f"radiant: refused: {exc}")
            return EXIT_FAILED
    print(
        f"published {release.version} on channel {release.channel} "
        f"(release sha256 {channel['release_sha256']})"
    )
    return EXIT_OK


def health_url(settings: Any) -> tuple[str, Path | None]:
    """The appliance's ``/healthz`` on this box, and the certificate to pin when it serves
    HTTPS (``RADIANT_HTTP_TLS``: ``on``, or ``auto`` beyond loopback with a certificate; see
    :func:`appliance.tls.http_certificate`, whose files this only reads: the updater runs as
    root and must not write the appliance's)."""
    from appliance import tls

    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.http_host, settings.http_host)  # noqa: S104
    paths = tls.certificate_paths(settings)
    serves_tls = settings.http_tls == "on" or (
        settings.http_tls == "auto" and not tls.is_loopback(settings.http_host)
    )
    host = f"[{host}]" if ":" in host else host
    if serves_tls and paths is not None:
        return f"https://{host}:{settings.http_port}/healthz", paths[0]
    return f"http://{host}:{settings.http_port}/healthz", None


def cmd_update_run(args: argparse.Namespace) -> int:
    from provisioning import device
    from provisioning.update.bucket import for_box
    from provisioning.update.slots import Slots
    from provisioning.update.updater import SystemdRestarter, Updater, pinned_context

    settings = cli_settings(args)
    if not settings.sync_remote:
        print("radiant: no bucket configured: updates come through the fleet's bucket")
        return EXIT_OK
    url, cert = health_url(settings)
    updater = Updater(
        settings,
        Slots(Path(args.apps), python=args.python),
        for_box(settings),
        SystemdRestarter(args.unit),
        device.pinned_fleet_key(settings),
        url,
        deadline_s=args.deadline,
        health_context=pinned_context(cert) if cert is not None else None,
    )
    state = updater.run_round()
    last = state.get("last", {})
    print(json.dumps(last, sort_keys=True))
    return EXIT_FAILED if last.get("outcome") in ("failed", "rolled_back", "refused") else EXIT_OK


def cmd_update_status(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    path = settings.data_dir / "update" / "state.json"
    print(path.read_text("utf-8") if path.is_file() else "{}")
    return EXIT_OK


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    fleet: argparse._SubParsersAction,  # type: ignore[type-arg]
    data_dir_option: Adder,
    remote_options: Adder,
    key_option: Adder,
    run_fleet: Wrap,
) -> None:
    """``fleet release ...`` under ``fleet``; ``update ...`` under ``radiant``."""
    release = fleet.add_parser("release", help="signed software releases").add_subparsers(
        dest="release_command", required=True, metavar="ACTION"
    )
    rbuild = release.add_parser("build", help="sign a bundle from a folder of wheels")
    rbuild.add_argument("--wheels", required=True, help="the app's wheel and its dependencies")
    rbuild.add_argument("--version", required=True)
    rbuild.add_argument("--channel", default="stable")
    rbuild.add_argument("--out", required=True, help="the bundle folder (created)")
    rbuild.add_argument(
        "--no-deps",
        action="append",
        metavar="NAME==VERSION",
        help="installed with pip --no-deps after the app; its wheel must be in --wheels "
        "(repeatable; default: medspaCy's, as ./just installs them; --no-deps '' for none)",
    )
    key_option(rbuild)
    rbuild.set_defaults(func=run_fleet(cmd_release_build))
    publish = release.add_parser("publish", help="upload a bundle and point its channel at it")
    publish.add_argument("bundle", metavar="BUNDLE")
    key_option(publish)
    remote_options(publish)
    publish.set_defaults(func=run_fleet(cmd_release_publish))

    update = sub.add_parser("update", help="this box's software updates").add_subparsers(
        dest="update_command", required=True, metavar="ACTION"
    )
    run = update.add_parser("run", help="one round: apply a newer release or roll it back")
    run.add_argument("--apps", default="/opt/radiant", help="the app slots' folder")
    run.add_argument("--unit", default="radiant.service")
    run.add_argument("--python", default="/usr/bin/python3", help="interpreter of new slots")
    run.add_argument("--deadline", type=float, default=180.0, help="seconds to a healthy /healthz")
    data_dir_option(run)
    run.set_defaults(func=cmd_update_run)
    status = update.add_parser("status", help="the updater's last outcome, failed versions")
    data_dir_option(status)
    status.set_defaults(func=cmd_update_status)
