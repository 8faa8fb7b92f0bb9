"""``radiant mode``, ``radiant sync status|passphrase|check`` and ``radiant restore``:
the sync commands, added to the ``radiant`` parser by :func:`add_commands`."""

from __future__ import annotations

import argparse
import sys

from appliance.config import Mode, Settings
from radiant.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    DataDirOption,
    cli_actor,
    cli_settings,
    fail,
    open_context,
    quiet_logs,
)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"




def cmd_mode(args: argparse.Namespace) -> int:
    """Show the mode, or switch it (audited; the running appliance follows within a round).
    Going online checks the remotes first and needs ``--yes`` (it prints what will start)."""
    from appliance.errors import Conflict, InvalidInput
    from sync.golive import go_online, readiness
    from sync.mode import effective_mode, set_mode

    ctx = open_context(args)
    try:
        db = ctx.pool.get()
        if args.mode is None:
            print(effective_mode(db, ctx.settings).value)
            return EXIT_OK
        if Mode(args.mode) is Mode.ONLINE:
            found = readiness(ctx.settings)
            for step in found.steps:
                state = "ok" if step.problem is None else step.problem
                print(f"online starts {step.code} to {step.target}: {state}")
            try:
                change = go_online(db, ctx.settings, cli_actor(), confirmed=args.yes,
                                   checked=found)  # fmt: skip
            except Conflict as exc:
                return fail(exc.detail, EXIT_CONFIG)
            except InvalidInput:
                return fail("add --yes to go online (the list above is what will start)",
                            EXIT_FAILED)  # fmt: skip
        else:
            change = set_mode(db, ctx.settings, Mode(args.mode), cli_actor())
    finally:
        ctx.pool.close_all()
    print(f"mode: {change.mode.value} (was {change.previous.value})")
    return EXIT_OK


def cmd_sync_status(args: argparse.Namespace) -> int:
    from sync import status

    ctx = open_context(args)
    try:
        report = status.compute(ctx.settings, ctx.pool.get())
    finally:
        ctx.pool.close_all()
    if args.json:
        print(report.model_dump_json(indent=2))
        return EXIT_OK
    if report.remote is None:
        print(f"mode: {report.mode.value}; no remote configured (RADIANT_SYNC_REMOTE)")
    else:
        r = report.remote
        print(
            f"mode: {report.mode.value}; remote: {r.kind} bucket {r.bucket!r}, prefix {r.prefix!r}"
            f"{', endpoint ' + r.endpoint if r.endpoint else ''}"
            f", files {'encrypted on the box' if r.encrypted else 'NOT encrypted'}"
        )
        print(
            f"bucket: {report.reachability or 'not checked yet'}"
            f"{' (checked ' + report.checked_at + ')' if report.checked_at else ''}"
        )
    d = report.database
    lag = f"{d.lag_s:.1f} s" if d.lag_s is not None else "unknown"
    line = (
        f"database: litestream {'running (pid ' + str(d.pid) + ')' if d.running else 'stopped'}"
        f", last sync {d.last_sync_at or 'never'}, lag {lag}"
    )
    if d.stale:
        line += ", STALE"
    if d.detail:
        line += f" ({d.detail})"
    print(line)
    o = report.objects
    print(
        f"files: {o.pending} pending ({_mb(o.pending_bytes)}), {o.uploading} uploading"
        f" ({_mb(o.uploading_bytes)}), {o.failed} failed ({_mb(o.failed_bytes)}), {o.done} done"
        f" ({_mb(o.done_bytes)}); {o.evicted_instances} instances evicted to the bucket"
    )
    print(f"last encrypted snapshot: {report.last_snapshot_at or 'none yet'}")
    if report.last_error:
        print(f"last error: {report.last_error}")
    return EXIT_OK


def cmd_sync_passphrase(args: argparse.Namespace) -> int:
    """Print the crypt passphrase and salt (generated once), for the administrator to keep."""
    from sync import crypt_keys

    settings = cli_settings(args)
    from appliance.config import prepare_data_dir

    prepare_data_dir(settings)
    try:
        keys = crypt_keys.ensure(settings)
    except crypt_keys.KeysError as exc:
        return fail(str(exc))
    print(
        "# Keep these two lines away from the appliance (a password manager, a safe). Without\n"
        "# them nobody can read the files in the bucket, nor restore a replacement box.",
        file=sys.stderr,
    )
    sys.stdout.write(keys.lines())
    return EXIT_OK


def cmd_sync_check(args: argparse.Namespace) -> int:
    """One line: can this box reach its bucket with these settings?"""
    from sync import rclone
    from sync.probe import probe, where
    from sync.rclone import Rclone

    settings = cli_settings(args)
    if not settings.sync_remote:
        return fail("no remote configured: set RADIANT_SYNC_REMOTE (s3 or azure)", EXIT_CONFIG)
    from appliance.config import prepare_data_dir

    prepare_data_dir(settings)
    rclone.write_config(settings)
    result = probe(settings, Rclone(settings))
    if not result.ok:
        return fail(result.detail or "the bucket cannot be reached")
    print(f"ok: {where(settings)} is reachable")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    """Fill an empty data dir from the bucket (database, files) and check it with fsck."""
    from sync import crypt_keys
    from sync.restore import RestoreError, restore_from_remote

    if not args.from_remote:
        return fail("say where from: --from-remote", EXIT_CONFIG)
    settings: Settings = cli_settings(args)
    keys = None
    if args.passphrase_stdin:
        try:
            keys = crypt_keys.parse(sys.stdin.read())
        except crypt_keys.KeysError as exc:
            return fail(str(exc), EXIT_CONFIG)

    quiet_logs(settings)
    try:
        report = restore_from_remote(
            settings, keys=keys, prefix=args.prefix, use_snapshot=args.snapshot
        )
    except RestoreError as exc:
        return fail(str(exc))
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.fsck.problems:
        print(problem.line())
    print(
        f"restored the database from the {report.database_from} and {report.files} files"
        f" ({_mb(report.bytes)}) into {settings.data_dir}; fsck: {report.fsck.summary()}"
    )
    return EXIT_OK if report.fsck.ok else EXIT_FAILED


def add_commands(sub: argparse._SubParsersAction, data_dir_option: DataDirOption) -> None:  # type: ignore[type-arg]
    """Add ``mode``, ``sync`` and ``restore`` to the ``radiant`` parser."""
    mode = sub.add_parser("mode", help="show or switch online/offline (replication, cloud AI)")
    mode.add_argument("mode", nargs="?", choices=[m.value for m in Mode], metavar="online|offline")
    mode.add_argument("--yes", action="store_true", help="confirm going online")
    data_dir_option(mode)
    mode.set_defaults(func=cmd_mode)

    sync = sub.add_parser("sync", help="replication to the hospital's bucket").add_subparsers(
        dest="sync_command", required=True, metavar="ACTION"
    )
    status = sync.add_parser("status", help="replication lag, queued and failed files")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    data_dir_option(status)
    status.set_defaults(func=cmd_sync_status)
    passphrase = sync.add_parser("passphrase", help="show the file encryption passphrase")
    data_dir_option(passphrase)
    passphrase.set_defaults(func=cmd_sync_passphrase)
    check = sync.add_parser("check", help="check that the bucket is reachable")
    data_dir_option(check)
    check.set_defaults(func=cmd_sync_check)

    restore = sub.add_parser("restore", help="fill an empty data dir from the bucket")
    restore.add_argument("--from-remote", action="store_true", help="restore from the bucket")
    restore.add_argument("--prefix", help="the dead box's folder in the bucket (its device id)")
    restore.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="read the two lines of `radiant sync passphrase` from standard input",
    )
    restore.add_argument(
        "--snapshot",
        action="store_true",
        help="restore the database from the newest encrypted snapshot, not Litestream",
    )
    data_dir_option(restore)
    restore.set_defaults(func=cmd_restore)
