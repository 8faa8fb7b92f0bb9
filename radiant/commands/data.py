"""``radiant import`` (USB stick, CD or folder), ``radiant fsck`` and ``radiant volume build``:
the commands over the stored data; none loads the web app."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from radiant.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    DataDirOption,
    cli_actor,
    cli_settings,
    open_context,
    quiet_logs,
)

if TYPE_CHECKING:
    from appliance.dicom.media import ImportProgress


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


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def cmd_import(args: argparse.Namespace) -> int:
    """Import a USB stick, CD or folder (read-only) through the one ingest path."""
    from appliance.dicom.media import MediaError, import_media

    path: Path = args.path
    if not path.exists():
        raise CliError(f"{path}: no such folder", EXIT_CONFIG)
    if not path.is_dir():
        raise CliError(
            f"{path}: not a folder (give the folder where the USB stick or CD is mounted)",
            EXIT_CONFIG,
        )
    ctx = open_context(args)
    printer = _ImportProgressPrinter(sys.stdout)
    try:
        summary = import_media(ctx, path, actor=cli_actor(), progress=printer)
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
        f" refused {counts['refused']},"
        f" skipped (not DICOM) {counts['skipped'] - counts['media_indexes']},"
        f" media indexes skipped {counts['media_indexes']},"
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
    """Check storage, index, quarantine, the audit chain (also against its signed checkpoints
    outside the database) and the report chains; ``--repair`` fixes what is safe."""
    from appliance.context import prepare
    from appliance.dicom.fsck import Kind, Problem, fsck
    from provisioning import audit_checkpoints

    settings = cli_settings(args)
    if not settings.data_dir.is_dir():
        raise CliError(f"{settings.data_dir}: no such data directory", EXIT_CONFIG)
    ctx = prepare(quiet_logs(settings))
    try:
        report = fsck(ctx, repair=args.repair, actor=cli_actor())
        signed = audit_checkpoints.verify(ctx.settings, ctx.pool.get())
    finally:
        ctx.pool.close_all()
    if not signed.ok and not any(p.kind is Kind.AUDIT for p in report.problems):
        # A chain edited and re-hashed with SQL is consistent on its own: only the signatures
        # made outside the database can tell (the same check as `radiant audit verify`).
        report.problems.append(Problem(
            Kind.AUDIT,
            f"at row {signed.first_bad_id}: {signed.reason} (signed checkpoints hold through"
            f" row {signed.signed_through})",
        ))
    for problem in report.problems:
        print(problem.line())
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_volume_build(args: argparse.Namespace) -> int:
    """Reconstruct one indexed series (by SeriesInstanceUID) and write it as NIfTI."""
    from appliance.errors import AppError
    from appliance.volumes.service import export_series

    out: Path = args.out
    if not out.name.endswith((".nii.gz", ".nii")):
        raise CliError(f"{out}: the output file name must end in .nii.gz or .nii", EXIT_CONFIG)
    if not out.parent.is_dir():
        raise CliError(f"{out.parent}: no such folder", EXIT_CONFIG)
    ctx = open_context(args)
    try:
        report = export_series(ctx, args.series_uid, out, cli_actor())
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


def add_commands(sub: argparse._SubParsersAction, data_dir_option: DataDirOption) -> None:  # type: ignore[type-arg]
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
