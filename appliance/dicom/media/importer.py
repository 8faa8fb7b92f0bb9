"""Importing DICOM from removable media (USB sticks, CDs, DVDs).

The files to read are planned from the media's DICOMDIR (:mod:`.dicomdir`, PS3.10 8) when it
has a valid one, else by walking it (:mod:`.walk`; files with the ``DICM`` prefix at byte 128,
PS3.10 7.1, whatever their name). Every file goes through the one ingest path
(:class:`appliance.dicom.ingest.Ingestor`) with source ``usb``. The media is only ever read
(:mod:`.files`).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.rows import new_id
from appliance.dicom.ingest import Outcome
from appliance.dicom.limits import meta_uids
from appliance.dicom.media.dicomdir import DicomdirInvalid, plan_dicomdir
from appliance.dicom.media.files import Item, Unreadable, find_dicomdir, read_media_file
from appliance.dicom.media.walk import MEDIA_INDEX, MEDIA_INDEX_OBJECT, plan_walk
from appliance.dicom.reading import MEDIA_STORAGE_DIRECTORY
from appliance.logs import get_logger

if TYPE_CHECKING:
    from appliance.context import AppContext  # the container only: no runtime import

log = get_logger("radiant.media")

SOURCE = "usb"
NOT_DICOM = "not DICOM: no 'DICM' prefix at byte 128 (PS3.10 7.1)"


class MediaError(Exception):
    """The media path itself cannot be imported (missing, not a folder, unreadable)."""


@dataclass(frozen=True)
class FileIssue:
    """A file (or DICOMDIR reference) that was not imported: its path relative to the media
    (POSIX separators; for a refused reference, the reference as written) and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImportProgress:
    """Where an import stands; sent after each file. ``current`` is the file just handled."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    imported: int
    duplicates: int
    quarantined: int
    refused: int
    skipped: int
    errors: int
    current: str


@dataclass
class ImportSummary:
    """The outcome of one media import. Paths are relative to the media."""

    import_id: str
    label: str
    used_dicomdir: bool
    dicomdir_problem: str | None = None
    files_total: int = 0
    bytes_total: int = 0
    imported: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    quarantined: list[FileIssue] = field(default_factory=list)
    refused: list[FileIssue] = field(default_factory=list)
    skipped: list[FileIssue] = field(default_factory=list)
    errors: list[FileIssue] = field(default_factory=list)
    study_ids: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the import ended early ("cancelled", disk full), if it did

    @property
    def ok(self) -> bool:
        """Everything readable was stored or already present, and the import ran to its end."""
        return not (self.quarantined or self.refused or self.errors) and self.stopped is None

    def counts(self) -> dict[str, int]:
        indexes = sum(i.reason in (MEDIA_INDEX, MEDIA_INDEX_OBJECT) for i in self.skipped)
        return {
            "files": self.files_total,
            "imported": len(self.imported),
            "duplicates": len(self.duplicates),
            "quarantined": len(self.quarantined),
            "refused": len(self.refused),
            "skipped": len(self.skipped),
            "media_indexes": indexes,
            "errors": len(self.errors),
            "studies": len(self.study_ids),
        }


def import_media(
    ctx: AppContext,
    path: Path,
    *,
    actor: Actor,
    progress: Callable[[ImportProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> ImportSummary:
    """Import the DICOM files on the media mounted at ``path`` (read-only).

    Uses the DICOMDIR when there is a valid one, else walks the media. Unreadable files are
    reported, not fatal. Records one ``media.import`` audit row (counts only). Raises
    :class:`MediaError` when ``path`` is not a readable folder.
    """
    root = Path(os.path.realpath(path))
    if not root.is_dir():
        raise MediaError(f"{path} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise MediaError(f"{path} cannot be read (permission denied)")
    label = Path(os.path.abspath(path)).name or root.name or "media"
    limit = ctx.settings.upload_max_mb << 20
    summary = ImportSummary(import_id=new_id(), label=label, used_dicomdir=False)
    dicomdir = find_dicomdir(root)
    items: list[Item] | None = None
    if dicomdir is not None:
        try:
            items = plan_dicomdir(root, dicomdir, limit)
            summary.used_dicomdir = True
        except DicomdirInvalid as exc:
            summary.dicomdir_problem = f"the DICOMDIR is invalid: {exc}; the media was walked"
    if items is None:
        items = plan_walk(root)
    summary.files_total = len(items)
    summary.bytes_total = sum(item.size for item in items)
    log.info(
        "media_import_started",
        import_id=summary.import_id,
        files=summary.files_total,
        bytes=summary.bytes_total,
        dicomdir=summary.used_dicomdir,
    )
    series_ids: set[str] = set()
    study_ids: set[str] = set()
    done = bytes_done = 0
    try:
        for item in items:
            if cancel is not None and cancel.is_set():
                summary.stopped = "cancelled"
                break
            if not _import_one(ctx, item, label, limit, actor, summary, series_ids, study_ids):
                break
            done += 1
            bytes_done += item.size
            if progress is not None:
                progress(_progress(summary, done, bytes_done, item.rel))
    finally:
        summary.study_ids = sorted(study_ids | _studies_of(ctx, series_ids))
        _audit(ctx, actor, summary)
    return summary


def _import_one(
    ctx: AppContext,
    item: Item,
    label: str,
    limit: int,
    actor: Actor,
    summary: ImportSummary,
    series_ids: set[str],
    study_ids: set[str],
) -> bool:
    """Handle one item and file it in ``summary``; False when the import must stop."""
    if item.refused is not None:
        summary.refused.append(FileIssue(item.rel, item.refused))
        log.info("media_file_refused", import_id=summary.import_id, reason=item.refused)
        return True
    if item.skipped is not None:
        summary.skipped.append(FileIssue(item.rel, item.skipped))
        return True
    if item.error is not None or item.real is None:
        summary.errors.append(FileIssue(item.rel, item.error or "cannot read"))
        return True
    # A file named by the DICOMDIR, or one whose name says DICOM, is read whatever its first
    # bytes: if it is broken, ingest quarantines it with the reason (the operator must know).
    by_name = item.referenced or item.real.suffix.casefold() == ".dcm"
    try:
        data = read_media_file(item.real, limit, require_magic=not by_name)
    except Unreadable as exc:
        summary.errors.append(FileIssue(item.rel, str(exc)))
        log.info("media_file_unreadable", import_id=summary.import_id, reason=str(exc))
        return True
    if data is None:
        summary.skipped.append(FileIssue(item.rel, NOT_DICOM))
        return True
    if meta_uids(data)[0] == MEDIA_STORAGE_DIRECTORY:
        # a DICOMDIR under another name (a Philips DIRFILE in a series folder): an index of
        # the media, whose files are read on their own (PS3.10 8)
        summary.skipped.append(FileIssue(item.rel, MEDIA_INDEX_OBJECT))
        return True
    try:
        result = ctx.ingestor.ingest(data, source=SOURCE, actor=actor, origin=label)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            summary.errors.append(FileIssue(item.rel, "not stored: the data disk is full"))
            summary.stopped = "the data disk is full"
            return False
        log.error("media_file_failed", import_id=summary.import_id, error=type(exc).__name__)
        summary.errors.append(FileIssue(item.rel, f"not stored ({exc.__class__.__name__})"))
        return True
    if result.outcome is Outcome.STORED:
        summary.imported.append(item.rel)
    elif result.outcome is Outcome.DUPLICATE:
        summary.duplicates.append(item.rel)
    else:
        summary.quarantined.append(FileIssue(item.rel, result.reason or "quarantined"))
        # ids and the reason, not the path (folder names on media may carry PHI)
        log.info(
            "media_file_quarantined",
            import_id=summary.import_id,
            quarantine_id=result.quarantine_id,
            reason=result.reason,
        )
    if result.study_id:
        study_ids.add(result.study_id)
    elif result.series_id:
        series_ids.add(result.series_id)
    return True


def _progress(summary: ImportSummary, done: int, bytes_done: int, current: str) -> ImportProgress:
    return ImportProgress(
        files_done=done,
        files_total=summary.files_total,
        bytes_done=bytes_done,
        bytes_total=summary.bytes_total,
        imported=len(summary.imported),
        duplicates=len(summary.duplicates),
        quarantined=len(summary.quarantined),
        refused=len(summary.refused),
        skipped=len(summary.skipped),
        errors=len(summary.errors),
        current=current,
    )


def _studies_of(ctx: AppContext, series_ids: set[str]) -> set[str]:
    """Study ids of already stored series (duplicates carry only their series id)."""
    if not series_ids:
        return set()
    db = ctx.pool.get()
    found: set[str] = set()
    ids = sorted(series_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = db.execute(f"SELECT DISTINCT study_id FROM series WHERE id IN ({marks})", chunk)  # noqa: S608
        found.update(str(row[0]) for row in rows)
    return found


def _audit(ctx: AppContext, actor: Actor, summary: ImportSummary) -> None:
    detail: dict[str, Any] = {
        **summary.counts(),
        "dicomdir": summary.used_dicomdir,
        "dicomdir_invalid": summary.dicomdir_problem is not None,
        "stopped": summary.stopped,
    }
    audit.record(
        ctx.pool.get(),
        actor,
        "media.import",
        object_type="media_import",
        object_id=summary.import_id,
        outcome="success" if summary.ok else "partial",
        detail=detail,
    )
    log.info("media_import_finished", import_id=summary.import_id, **detail)
