"""The ``radiant`` command: serve, migrate, users, audit verification, media import, fsck,
volume export.

Errors print one line to stderr and exit non-zero: 2 for configuration or usage, 1 for a refused
operation or a failed check.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pydantic import ValidationError

from appliance.audit.models import Actor
from appliance.config import ConfigError, Settings, load_settings
from appliance.db.migrate import MigrationError

if TYPE_CHECKING:
    from appliance.dicom.media import ImportProgress

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _cli_actor() -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return Actor(name=f"cli:{who}", role="system", client="localhost")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(data_dir=getattr(args, "data_dir", None))


def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from appliance.app import prepare

    settings = _settings(args)
    ctx = prepare(settings)
    return settings, ctx.pool.get()


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API and screen with granian (one worker: NiceGUI keeps state in process)."""
    from granian import Granian
    from granian.constants import Interfaces, SSLProtocols

    from appliance import logs, tls
    from appliance.app import prepare

    overrides = {"http_host": args.host, "http_port": args.port, "data_dir": args.data_dir}
    settings = load_settings(**overrides)
    logs.configure(settings.log_level)
    ctx = prepare(settings)  # fail here, with one line, rather than inside the worker
    ctx.pool.close_all()
    certificate = tls.http_certificate(settings)  # refuses plain HTTP beyond loopback
    scheme = "https" if certificate else "http"
    # The worker builds the app from the environment: pass the effective values down.
    os.environ["RADIANT_HTTP_HOST"] = settings.http_host
    os.environ["RADIANT_HTTP_PORT"] = str(settings.http_port)
    os.environ["RADIANT_DATA_DIR"] = str(settings.data_dir.resolve())
    logs.get_logger("radiant.cli").info(
        "serving",
        url=f"{scheme}://{settings.http_host}:{settings.http_port}",
        data_dir=str(settings.data_dir.resolve()),
        mode=settings.mode.value,
        tls_fingerprint=tls.fingerprint_sha256(certificate[0]) if certificate else None,
    )
    if tls.plaintext_exposed(settings, certificate is not None):
        logs.get_logger("radiant.cli").warning(
            "plaintext_http", detail="RADIANT_ALLOW_PLAINTEXT_HTTP: passwords cross the network"
        )
    Granian(
        "appliance.app:create_app",
        factory=True,
        address=settings.http_host,
        port=settings.http_port,
        interface=Interfaces.ASGI,
        workers=1,
        log_access=False,
        log_dictconfig=logs.granian_config(),
        websockets=True,
        ssl_cert=certificate[0].resolve() if certificate else None,
        ssl_key=certificate[1].resolve() if certificate else None,
        ssl_protocol_min=SSLProtocols.tls12,
    ).serve()
    return EXIT_OK


def _print_certificate(cert: Path) -> None:
    from cryptography import x509

    from appliance import tls

    loaded = tls.load_certificate(cert)
    try:
        names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        alt = ", ".join(str(n.value) for n in names)
    except x509.ExtensionNotFound:
        alt = ""
    print(f"certificate: {cert}")
    print(f"sha256 fingerprint: {tls.fingerprint_sha256(cert)}")
    print(f"valid until: {loaded.not_valid_after_utc.isoformat()}")
    print(f"names: {alt}")


def cmd_tls_show(args: argparse.Namespace) -> int:
    """The certificate the screen, API and DICOM TLS serve; with ``ensure`` (first boot,
    containers) the box's own is made when none is configured or made yet."""
    from appliance import tls
    from appliance.config import prepare_data_dir

    settings = _settings(args)
    prepare_data_dir(settings)
    if args.tls_command == "ensure":
        cert, _ = tls.ensure_box_certificate(settings)
    else:
        paths = tls.certificate_paths(settings)
        if paths is None:
            raise CliError("no certificate yet: `radiant tls ensure` makes the box's own")
        cert = paths[0]
    _print_certificate(cert)
    print(f"source: {'site (RADIANT_TLS_CERT)' if tls.site_supplied(settings) else 'box'}")
    return EXIT_OK


def cmd_tls_renew(args: argparse.Namespace) -> int:
    """A new key pair and certificate for the box (audited); restart to serve it."""
    from appliance import tls
    from appliance.audit import service as audit

    settings, db = _open(args)
    try:
        cert, _ = tls.write_box_certificate(settings)
    except tls.CertificateError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    fingerprint = tls.fingerprint_sha256(cert)
    audit.record(
        db,
        _cli_actor(),
        "tls.renew",
        object_type="certificate",
        object_id=fingerprint,
    )
    _print_certificate(cert)
    print("restart the appliance to serve it; clients that pin the old fingerprint need the new")
    return EXIT_OK


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
        user = service.create_user(db, data, _cli_actor())
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
        pairs = service.unlock(db, args.username, _cli_actor(), client=args.address)
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


class _ImportProgressPrinter:
    """Import progress: one updating line on a terminal, else one line per file."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._width = 0

    def __call__(self, p: ImportProgress) -> None:
        text = (
            f"{p.files_done}/{p.files_total} files, {_mb(p.bytes_done)} of {_mb(p.bytes_total)}:"
            f" imported {p.imported}, duplicates {p.duplicates}, quarantined {p.quarantined},"
            f" refused {p.refused}, skipped {p.skipped}, errors {p.errors}"
        )
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


def _quiet_logs(settings: Settings) -> Settings:
    """JSON logs on stderr, warnings and worse only: stdout is for the person at the terminal."""
    import logging

    from appliance import logs

    logs.configure("error" if settings.log_level == "error" else "warning")
    # A refused file's reason is reported per file; the codecs' own tracebacks are noise here.
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    return settings


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def cmd_import(args: argparse.Namespace) -> int:
    """Import a USB stick, CD or folder (read-only) through the one ingest path."""
    from appliance.app import prepare
    from appliance.dicom.media import MediaError, import_media

    path: Path = args.path
    if not path.exists():
        raise CliError(f"{path}: no such folder", EXIT_CONFIG)
    if not path.is_dir():
        raise CliError(
            f"{path}: not a folder (give the folder where the USB stick or CD is mounted)",
            EXIT_CONFIG,
        )
    ctx = prepare(_quiet_logs(_settings(args)))
    printer = _ImportProgressPrinter(sys.stdout)
    try:
        summary = import_media(ctx, path, actor=_cli_actor(), progress=printer)
    except MediaError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    finally:
        printer.finish()
        ctx.pool.close_all()
    if summary.dicomdir_problem:
        print(f"note: {summary.dicomdir_problem}")
    for issue in summary.quarantined:
        print(f"quarantined: {issue.path}: {issue.reason}")
    for issue in summary.refused:
        print(f"refused: {issue.path}: {issue.reason}")
    for issue in summary.errors:
        print(f"error: {issue.path}: {issue.reason}")
    for issue in summary.skipped[:20]:
        print(f"skipped: {issue.path}: {issue.reason}")
    if len(summary.skipped) > 20:
        print(f"skipped: ... and {len(summary.skipped) - 20} more")
    counts = summary.counts()
    print(
        f"{'DICOMDIR' if summary.used_dicomdir else 'folder walk'}: imported {counts['imported']},"
        f" duplicates {counts['duplicates']}, quarantined {counts['quarantined']},"
        f" refused {counts['refused']}, skipped (not DICOM) {counts['skipped']},"
        f" errors {counts['errors']}; studies touched {counts['studies']}"
    )
    if summary.stopped:
        print(f"radiant: the import stopped early: {summary.stopped}", file=sys.stderr)
        return EXIT_FAILED
    if not summary.ok:
        bad = counts["quarantined"] + counts["refused"] + counts["errors"]
        print(
            f"radiant: {bad} files were not imported (quarantined, refused or unreadable)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def cmd_fsck(args: argparse.Namespace) -> int:
    """Check storage, index, quarantine and audit chain; ``--repair`` fixes what is safe."""
    from appliance.app import prepare
    from appliance.dicom.fsck import fsck

    settings = _settings(args)
    if not settings.data_dir.is_dir():
        raise CliError(f"{settings.data_dir}: no such data directory", EXIT_CONFIG)
    ctx = prepare(_quiet_logs(settings))
    try:
        report = fsck(ctx, repair=args.repair, actor=_cli_actor())
    finally:
        ctx.pool.close_all()
    for problem in report.problems:
        print(problem.line())
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_volume_build(args: argparse.Namespace) -> int:
    """Reconstruct one indexed series (by SeriesInstanceUID) and write it as NIfTI."""
    from appliance.app import prepare
    from appliance.errors import AppError
    from appliance.volumes.service import export_series

    out: Path = args.out
    if not out.name.endswith((".nii.gz", ".nii")):
        raise CliError(f"{out}: the output file name must end in .nii.gz or .nii", EXIT_CONFIG)
    if not out.parent.is_dir():
        raise CliError(f"{out.parent}: no such folder", EXIT_CONFIG)
    ctx = prepare(_quiet_logs(_settings(args)))
    try:
        report = export_series(ctx, args.series_uid, out, _cli_actor())
    except AppError as exc:
        raise CliError(exc.detail) from None
    finally:
        ctx.pool.close_all()
    for volume in report.written:
        shape = " x ".join(str(n) for n in volume.shape)
        label = f" ({volume.label})" if volume.label else ""
        print(f"wrote {volume.path}: {shape}{label}")
        for note in volume.notes:
            print(f"  {note.code}: {note.text}")
    for note in report.not_volumes:
        print(f"not a volume: {note.text}")
    if not report.written:
        raise CliError("nothing written: the series holds no volume (see the reasons above)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiant", description="RadiantAI appliance")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="data directory (RADIANT_DATA_DIR)")

    serve = sub.add_parser("serve", help="serve the API, the screen and the receivers")
    serve.add_argument("--host", help="listen address (RADIANT_HTTP_HOST)")
    serve.add_argument("--port", type=_port, help="HTTP port (RADIANT_HTTP_PORT)")
    data_dir_option(serve)
    serve.set_defaults(func=cmd_serve)

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

    tls_parser = sub.add_parser("tls", help="the box's TLS certificate").add_subparsers(
        dest="tls_command", required=True, metavar="ACTION"
    )
    tls_show = tls_parser.add_parser(
        "show", help="print the served certificate's SHA-256 fingerprint, names and validity"
    )
    data_dir_option(tls_show)
    tls_show.set_defaults(func=cmd_tls_show)
    tls_ensure = tls_parser.add_parser(
        "ensure", help="make the box's certificate unless one exists or the site's is set; show it"
    )
    data_dir_option(tls_ensure)
    tls_ensure.set_defaults(func=cmd_tls_show)
    tls_renew = tls_parser.add_parser("renew", help="make a new key and certificate for the box")
    data_dir_option(tls_renew)
    tls_renew.set_defaults(func=cmd_tls_renew)

    media = sub.add_parser("import", help="import DICOM from a USB stick, CD or folder")
    media.add_argument("path", type=Path, metavar="PATH", help="where the media is mounted")
    data_dir_option(media)
    media.set_defaults(func=cmd_import)

    check = sub.add_parser("fsck", help="check that storage, index and audit trail agree")
    check.add_argument(
        "--repair",
        action="store_true",
        help="quarantine files that are not indexed and remove partial writes",
    )
    data_dir_option(check)
    check.set_defaults(func=cmd_fsck)

    volume = sub.add_parser("volume", help="3D volumes of indexed series").add_subparsers(
        dest="volume_command", required=True, metavar="ACTION"
    )
    vbuild = volume.add_parser(
        "build", help="reconstruct a series and write it as NIfTI (prints the QA notes)"
    )
    vbuild.add_argument("series_uid", metavar="SERIES_UID", help="SeriesInstanceUID")
    vbuild.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE.nii.gz",
        help="output file; several volumes become FILE_1.nii.gz, FILE_2.nii.gz, ...",
    )
    data_dir_option(vbuild)
    vbuild.set_defaults(func=cmd_volume_build)

    from sync.cli import add_commands as add_sync_commands

    add_sync_commands(sub, data_dir_option)
    from provisioning.cli import add_commands as add_provisioning_commands

    add_provisioning_commands(sub, data_dir_option)
    from ai.install.cli import add_commands as add_model_commands

    add_model_commands(sub, data_dir_option)
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except MigrationError as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CliError as exc:
        print(f"radiant: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
