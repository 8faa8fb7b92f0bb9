"""``radiant migrate``, ``radiant user create|unlock`` and ``radiant audit verify``: the
commands that need the database and nothing of the web app."""

from __future__ import annotations

import argparse
import sys

import sqlite_utils
from pydantic import ValidationError

from appliance.config import Settings
from radiant.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    DataDirOption,
    cli_actor,
    open_context,
)


def _open(args: argparse.Namespace) -> tuple[Settings, sqlite_utils.Database]:
    ctx = open_context(args, quiet=False)
    return ctx.settings, ctx.pool.get()


def cmd_migrate(args: argparse.Namespace) -> int:
    from appliance.db.migrate import schema_version

    _, db = _open(args)
    print(f"schema version {schema_version(db)}")
    return EXIT_OK


def cmd_user_create(args: argparse.Namespace) -> int:
    from appliance.auth import service
    from appliance.auth.models import UserCreate
    from appliance.errors import AppError

    if not args.password_stdin:
        raise CliError("give the password on standard input with --password-stdin", EXIT_CONFIG)
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        data = UserCreate(
            username=args.username, password=password, role=args.role, full_name=args.full_name
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = err["loc"][0] if err.get("loc") else "input"
        raise CliError(f"{field}: {str(err['msg']).removeprefix('Value error, ')}") from None
    _, db = _open(args)
    try:
        user = service.create_user(db, data, cli_actor())
    except AppError as exc:
        raise CliError(exc.detail) from None
    print(f"created {user.role.value} {user.username} ({user.id})")
    return EXIT_OK


def cmd_user_unlock(args: argparse.Namespace) -> int:
    """Lift an account's sign-in locks from every address (audited ``user.unlock``)."""
    from appliance.auth import service
    from appliance.errors import AppError

    _, db = _open(args)
    try:
        pairs = service.unlock(db, args.username, cli_actor(), client=args.address)
    except AppError as exc:
        raise CliError(exc.detail) from None
    where = f"; address {args.address} unblocked" if args.address else ""
    print(f"unlocked {args.username}: {pairs} locked address(es) cleared{where}")
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """The hash chain on its own and against the signed checkpoints outside the database."""
    from provisioning import audit_checkpoints

    settings, db = _open(args)
    report = audit_checkpoints.verify(settings, db)
    if report.ok:
        unsigned = report.rows - report.signed_through
        print(
            f"audit chain intact: {report.rows} rows; {report.checkpoints} signed checkpoints "
            f"cover rows 1-{report.signed_through}"
            + (f" ({unsigned} newer rows not yet signed)" if unsigned else "")
        )
        return EXIT_OK
    print(
        f"audit chain broken at row {report.first_bad_id}: {report.reason}"
        f" (signed checkpoints hold through row {report.signed_through})",
        file=sys.stderr,
    )
    return EXIT_FAILED


def add_commands(sub: argparse._SubParsersAction, data_dir_option: DataDirOption) -> None:  # type: ignore[type-arg]
    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    data_dir_option(migrate)
    migrate.set_defaults(func=cmd_migrate)

    user = sub.add_parser("user", help="manage users").add_subparsers(
        dest="user_command", required=True, metavar="ACTION"
    )
    create = user.add_parser("create", help="create a user")
    create.add_argument("--username", required=True)
    create.add_argument(
        "--role", required=True, choices=["admin", "radiologist", "technician", "viewer"]
    )
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    create.add_argument("--full-name")
    data_dir_option(create)
    create.set_defaults(func=cmd_user_create)

    unlock = user.add_parser("unlock", help="lift an account's sign-in locks (from every address)")
    unlock.add_argument("--username", required=True)
    unlock.add_argument(
        "--address", help="also lift the block of this client address (all accounts)"
    )
    data_dir_option(unlock)
    unlock.set_defaults(func=cmd_user_unlock)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    verify = audit.add_parser("verify", help="check the audit hash chain")
    data_dir_option(verify)
    verify.set_defaults(func=cmd_audit_verify)
