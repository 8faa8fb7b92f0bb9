"""Importing DICOM from removable media (USB sticks, CDs, DVDs), and noticing media appear.

A DICOM file-set on media is indexed by a DICOMDIR file at its root (PS3.10 8; the Basic
Directory IOD, PS3.3 Annex F). Its directory records form a tree (PATIENT > STUDY > SERIES >
IMAGE, PS3.3 F.4) linked by byte offsets (PS3.3 F.3.2.1), and the instance-level records name
their file by a Referenced File ID: path components relative to the DICOMDIR's folder
(PS3.10 8.2). :func:`import_media` reads that tree itself (with ``dcmread``) rather than through
``pydicom.fileset.FileSet``, because ``FileSet`` refuses the whole file-set when one reference
leaves the media, silently drops references to missing files and reads orphaned records' files:
here every reference is judged on its own and reported.

Without a DICOMDIR, or when it is invalid, the media is walked and every file with the ``DICM``
prefix at byte 128 (PS3.10 7.1) is imported, whatever its name. Every file goes through the one
ingest path (:class:`appliance.dicom.ingest.Ingestor`) with source ``usb``.

The media is only ever read: files are opened read-only, nothing is created on it, and a file is
opened only after its real path (symbolic links resolved) was checked to lie inside the media.
"""

from __future__ import annotations

import errno
import io
import os
import pwd
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydicom
from pydicom.fileset import DIRECTORY_RECORDERS

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.db.rows import new_id
from appliance.dicom.ingest import Outcome
from appliance.dicom.limits import Refused, check_structure
from appliance.dicom.reading import MEDIA_STORAGE_DIRECTORY
from appliance.logs import get_logger

log = get_logger("radiant.media")

SOURCE = "usb"
DICOMDIR = "DICOMDIR"
MAGIC_OFFSET = 128
MAGIC = b"DICM"
NOT_DICOM = "not DICOM: no 'DICM' prefix at byte 128 (PS3.10 7.1)"
APPLEDOUBLE = "macOS metadata file ('._' name), not DICOM"
MEDIA_INDEX = "a DICOMDIR (media index), not an instance"
_CHUNK = 1 << 20
# Folders an operating system keeps on removable media; never DICOM.
_HOUSEKEEPING_DIRS = {"system volume information", "$recycle.bin", "recycler", "lost+found"}
# PS3.3 F.5 record types; the retired ones still appear on old CDs.
_RETIRED_RECORD_TYPES = {
    "OVERLAY",
    "MODALITY LUT",
    "VOI LUT",
    "CURVE",
    "TOPIC",
    "VISIT",
    "RESULTS",
    "INTERPRETATION",
    "STUDY COMPONENT",
    "STORED PRINT",
    "HL7 STRUC DOC",
    "MRDR",
}
_RECORD_TYPES = set(DIRECTORY_RECORDERS) | {"PRIVATE"} | _RETIRED_RECORD_TYPES
# The levels of the Basic Directory Information Model (PS3.3 F.4): a record's required parent.
_PARENT = {"PATIENT": None, "STUDY": "PATIENT", "SERIES": "STUDY", "IMAGE": "SERIES"}


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
        return {
            "files": self.files_total,
            "imported": len(self.imported),
            "duplicates": len(self.duplicates),
            "quarantined": len(self.quarantined),
            "refused": len(self.refused),
            "skipped": len(self.skipped),
            "errors": len(self.errors),
            "studies": len(self.study_ids),
        }


class _Refused(Exception):
    """A DICOMDIR reference that leaves the media; never opened."""


class _Unreadable(Exception):
    """A file that cannot be read; the message is the reason (no path)."""


class DicomdirInvalid(Exception):
    """The DICOMDIR cannot be trusted as an index of the media; the message says why."""


@dataclass(frozen=True)
class _Item:
    """One unit of work: a file to read (``real`` set) or a reference already judged."""

    rel: str
    real: Path | None
    size: int
    referenced: bool  # named by the DICOMDIR: imported whatever its first bytes are
    refused: str | None = None
    error: str | None = None
    skipped: str | None = None


# -- finding the DICOMDIR -------------------------------------------------------------------


def _fold(name: str) -> str:
    """A file name as ISO 9660 media may show it, folded: no ``;1`` version, no trailing dot,
    case-insensitive (a Linux mount without Rock Ridge shows ``dicomdir`` for ``DICOMDIR``)."""
    base, semicolon, version = name.rpartition(";")
    if semicolon and version.isdigit():
        name = base
    return name.rstrip(".").casefold()


def find_dicomdir(root: Path) -> Path | None:
    """The DICOMDIR file at the top of ``root`` (name matched case-insensitively), if any."""
    exact = root / DICOMDIR
    if exact.is_file():
        return exact
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if _fold(entry.name) == DICOMDIR.casefold() and entry.is_file():
                    return Path(entry.path)
    except OSError:
        return None
    return None


# -- reading files from the media -----------------------------------------------------------


def _describe(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "cannot read: permission denied"
    if exc.errno == errno.ELOOP:
        return "cannot read: the file was replaced by a symbolic link"
    return f"cannot read: {exc.strerror or exc.__class__.__name__}"


def _read(real: Path, limit: int, *, require_magic: bool = False) -> bytes | None:
    """Read the regular file ``real`` (no symlinks followed, never created or written).

    With ``require_magic``, return None when the file lacks the ``DICM`` prefix (only its first
    132 bytes are read then). Raises :class:`_Unreadable` with the reason.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise _Unreadable(_describe(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Unreadable("not a regular file")
        chunks: list[bytes] = []
        size = 0
        if require_magic:
            head = _read_exactly(fd, MAGIC_OFFSET + len(MAGIC))
            if head[MAGIC_OFFSET:] != MAGIC:
                return None
            chunks.append(head)
            size = len(head)
        while chunk := os.read(fd, _CHUNK):
            size += len(chunk)
            if size > limit:
                raise _Unreadable(f"larger than RADIANT_UPLOAD_MAX_MB ({limit >> 20} MB)")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise _Unreadable(_describe(exc)) from None
    finally:
        os.close(fd)


def _read_exactly(fd: int, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = os.read(fd, count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _inside(root: Path, candidate: Path) -> Path:
    """The real path of ``candidate``; :class:`_Refused` when it resolves outside ``root``."""
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(root):
        raise _Refused("resolves outside the media (through a symbolic link)")
    return real


def _stat_item(root: Path, rel: str, candidate: Path, *, referenced: bool) -> _Item:
    """An item for ``candidate``: refused if it escapes ``root``, an error if it cannot be read."""
    try:
        real = _inside(root, candidate)
    except _Refused as exc:
        return _Item(rel, None, 0, referenced, refused=str(exc))
    try:
        info = os.stat(real)
    except FileNotFoundError:
        reason = (
            "referenced by the DICOMDIR but not found on the media"
            if referenced
            else "cannot read: the file vanished or is a broken link"
        )
        return _Item(rel, None, 0, referenced, error=reason)
    except OSError as exc:
        return _Item(rel, None, 0, referenced, error=_describe(exc))
    if not stat.S_ISREG(info.st_mode):
        return _Item(rel, None, 0, referenced, error="not a regular file")
    return _Item(rel, real, info.st_size, referenced)


# -- the DICOMDIR ---------------------------------------------------------------------------


def dicomdir_references(ds: pydicom.Dataset) -> list[tuple[str, ...]]:
    """Referenced File IDs (as path components) of the records reachable from the root.

    Walks the record tree by its offsets (PS3.3 F.3.2.1) and checks it against the Basic
    Directory Information Model (PS3.3 F.4, F.5). Raises :class:`DicomdirInvalid`.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None or str(meta.get("MediaStorageSOPClassUID", "")) != MEDIA_STORAGE_DIRECTORY:
        raise DicomdirInvalid("it is not a Media Storage Directory (PS3.10 8.6)")
    sequence = ds.get("DirectoryRecordSequence")
    if not sequence:
        raise DicomdirInvalid("it has no directory records")
    records = {record.seq_item_tell: record for record in sequence}
    first = int(ds.get("OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity", 0) or 0)
    if not first:
        raise DicomdirInvalid("it does not say where its first directory record is")
    references: list[tuple[str, ...]] = []
    seen_refs: set[tuple[str, ...]] = set()
    visited: set[int] = set()
    # Depth first in the DICOMDIR's own order: a record, its lower level, then its next sibling.
    stack: list[tuple[int, str | None]] = [(first, None)]
    while stack:
        offset, parent = stack.pop()
        if not offset:
            continue
        if offset in visited:
            raise DicomdirInvalid("its directory records form a loop")
        visited.add(offset)
        record = records.get(offset)
        if record is None:
            raise DicomdirInvalid(f"a record offset ({offset}) points to no directory record")
        kind = str(record.get("DirectoryRecordType", "")).strip()
        if kind not in _RECORD_TYPES:
            shown = "".join(ch for ch in kind[:16] if ch.isprintable())
            raise DicomdirInvalid(f"a directory record has the invalid type {shown!r} (PS3.3 F.5)")
        if kind in _PARENT and _PARENT[kind] != parent:
            where = f"under a {parent} record" if parent else "at the top level"
            article = "an" if kind[:1] in "AEIOU" else "a"
            raise DicomdirInvalid(f"{article} {kind} record is {where} (PS3.3 F.4)")
        components = _file_id(record)
        if components and components not in seen_refs:
            seen_refs.add(components)
            references.append(components)
        stack.append((int(record.get("OffsetOfTheNextDirectoryRecord", 0) or 0), parent))
        stack.append((int(record.get("OffsetOfReferencedLowerLevelDirectoryEntity", 0) or 0), kind))
    if not references:
        raise DicomdirInvalid("it references no files")
    return references


def _file_id(record: pydicom.Dataset) -> tuple[str, ...]:
    value = record.get("ReferencedFileID")
    if value in (None, ""):
        return ()
    parts = [value] if isinstance(value, str) else list(value)
    return tuple(str(part).rstrip(" \x00") for part in parts)


def _check_file_id(components: tuple[str, ...]) -> None:
    """PS3.10 8.2: a File ID is a relative path of plain components; refuse anything else."""
    first = components[0]
    if first.startswith(("/", "\\")) or (len(first) >= 2 and first[1] == ":"):
        raise _Refused("is an absolute path, not a File ID inside the media")
    for part in components:
        if part == "..":
            raise _Refused("leaves the media ('..' in the File ID)")
        if part in ("", ".") or any(ch in part for ch in "/\\\x00"):
            raise _Refused("is not a valid File ID (PS3.10 8.2)")


class _Resolver:
    """Finds a File ID's file: exact names first, then ISO 9660 folded names (see
    :func:`_fold`); listings are cached."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listings: dict[Path, dict[str, str]] = {}

    def _listing(self, folder: Path) -> dict[str, str]:
        if folder not in self._listings:
            names: dict[str, str] = {}
            try:
                for name in sorted(os.listdir(folder)):
                    names.setdefault(_fold(name), name)
            except OSError:
                pass
            self._listings[folder] = names
        return self._listings[folder]

    def locate(self, components: tuple[str, ...]) -> Path:
        current = self.root
        for index, part in enumerate(components):
            if os.path.lexists(current / part):
                current = current / part
                continue
            match = self._listing(current).get(_fold(part))
            if match is None:
                return current.joinpath(*components[index:])
            current = current / match
        return current


def _plan_dicomdir(root: Path, dicomdir: Path, limit: int) -> list[_Item]:
    """Items for the files the DICOMDIR references. Raises :class:`DicomdirInvalid`."""
    try:
        real = _inside(root, dicomdir)
        data = _read(real, limit)
    except _Refused:
        raise DicomdirInvalid("it is a symbolic link pointing outside the media") from None
    except _Unreadable as exc:
        raise DicomdirInvalid(str(exc)) from None
    assert data is not None
    try:
        check_structure(data)
    except Refused as exc:
        raise DicomdirInvalid(exc.reason) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings may quote values (PHI)
            ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types on garbage
        raise DicomdirInvalid(f"it cannot be parsed ({exc.__class__.__name__})") from None
    try:
        references = dicomdir_references(ds)
    except DicomdirInvalid:
        raise
    except Exception as exc:  # records are converted lazily: garbage raises here
        raise DicomdirInvalid(f"its records cannot be read ({exc.__class__.__name__})") from None
    resolver = _Resolver(root)
    items: list[_Item] = []
    seen: set[Path] = set()
    for components in references:
        rel = "/".join(components)
        try:
            _check_file_id(components)
        except _Refused as exc:
            items.append(_Item(rel, None, 0, True, refused=str(exc)))
            continue
        item = _stat_item(root, rel, resolver.locate(components), referenced=True)
        if item.real is not None:
            if item.real in seen:
                continue
            seen.add(item.real)
        items.append(item)
    return items


# -- walking the media ----------------------------------------------------------------------


def _ignored_dir(name: str) -> bool:
    return name.startswith(".") or name.casefold() in _HOUSEKEEPING_DIRS


def _plan_walk(root: Path) -> list[_Item]:
    """Items for every file under ``root`` (hidden and system folders left out), sorted.

    Files named DICOMDIR are skipped: a media index is not an instance (when the import walks,
    the top one was found invalid).
    """
    items: list[_Item] = []

    def unreadable_folder(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        rel = where.relative_to(root).as_posix() if where.is_relative_to(root) else "."
        reason = _describe(exc).replace("cannot read", "cannot list the folder", 1)
        items.append(_Item(rel + "/", None, 0, False, error=reason))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable_folder):
        dirnames[:] = sorted(d for d in dirnames if not _ignored_dir(d))
        folder = Path(dirpath)
        for name in sorted(filenames):
            candidate = folder / name
            rel = candidate.relative_to(root).as_posix()
            if name.startswith("._"):
                items.append(_Item(rel, None, 0, False, skipped=APPLEDOUBLE))
            elif _fold(name) == DICOMDIR.casefold():
                items.append(_Item(rel, None, 0, False, skipped=MEDIA_INDEX))
            else:
                items.append(_stat_item(root, rel, candidate, referenced=False))
    return items


# -- the import -----------------------------------------------------------------------------


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
    items: list[_Item] | None = None
    if dicomdir is not None:
        try:
            items = _plan_dicomdir(root, dicomdir, limit)
            summary.used_dicomdir = True
        except DicomdirInvalid as exc:
            summary.dicomdir_problem = f"the DICOMDIR is invalid: {exc}; the media was walked"
    if items is None:
        items = _plan_walk(root)
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
    item: _Item,
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
        data = _read(item.real, limit, require_magic=not by_name)
    except _Unreadable as exc:
        summary.errors.append(FileIssue(item.rel, str(exc)))
        return True
    if data is None:
        summary.skipped.append(FileIssue(item.rel, NOT_DICOM))
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


# -- noticing media -------------------------------------------------------------------------

COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Media:
    """A mounted medium: where, its label (the folder name), whether it has a DICOMDIR, and its
    file count (None when over :data:`COUNT_LIMIT` files or unreadable: too costly to count)."""

    path: Path
    label: str
    has_dicomdir: bool
    file_count: int | None


@dataclass(frozen=True)
class MediaEvent:
    kind: Literal["appeared", "disappeared"]
    media: Media


def _count_files(root: Path) -> int | None:
    """Files under ``root`` (hidden and system folders left out); None past the limit."""
    limit = COUNT_LIMIT
    count = 0
    try:
        for _dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not _ignored_dir(d)]
            count += len(filenames)
            if count > limit:
                return None
    except OSError:
        return None
    return count


def _non_empty(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


def _is_user_folder(folder: Path, root: Path) -> bool:
    """``/media/<user>`` or ``/run/media/<user>`` (udisks2 mounts media one level below)."""
    if os.path.ismount(folder):
        return False
    if root.name == "media" and root.parent.name == "run":
        return True
    try:
        pwd.getpwnam(folder.name)
    except KeyError:
        return False
    return True


def scan_media(roots: Iterable[Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """Media folders under the mount roots: ``<root>/<label>`` or ``<root>/<user>/<label>``.

    A folder counts when it is a mount point or is not empty (an empty ``/mnt/cdrom`` is a
    mount point waiting for a disc). Folders that hold or lie in an excluded path (the
    appliance's own data disk) are left out. Needs no privileges and no udev.
    """
    excluded = [Path(os.path.realpath(p)) for p in exclude]
    found: list[Path] = []

    def consider(folder: Path) -> None:
        if folder.is_symlink() or not folder.is_dir():
            return
        if not (os.path.ismount(folder) or _non_empty(folder)):
            return
        real = Path(os.path.realpath(folder))
        if any(ex.is_relative_to(real) or real.is_relative_to(ex) for ex in excluded):
            return
        found.append(folder)

    for root in roots:
        try:
            children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            continue
        for child in children:
            if _is_user_folder(child, root):
                try:
                    grandchildren = sorted(child.iterdir())
                except OSError:
                    continue
                for grandchild in grandchildren:
                    consider(grandchild)
            else:
                consider(child)
    return found


def describe_media(path: Path) -> Media:
    """What the screen shows for a medium (cheap: a bounded file count)."""
    return Media(
        path=path,
        label=path.name,
        has_dicomdir=find_dicomdir(path) is not None,
        file_count=_count_files(path),
    )


class MediaWatcher:
    """Polls the mount roots every ``interval_s`` and tells listeners when media appear or
    disappear; :meth:`current` is the list of media now present."""

    def __init__(
        self,
        roots: Sequence[Path],
        interval_s: float = 2.0,
        *,
        exclude: Iterable[Path] = (),
    ) -> None:
        self.roots = list(roots)
        self.interval_s = interval_s
        self.exclude = list(exclude)
        self.listeners: list[Callable[[MediaEvent], None]] = []
        self._media: dict[Path, Media] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> list[Media]:
        with self._lock:
            return sorted(self._media.values(), key=lambda m: str(m.path))

    def poll(self) -> list[MediaEvent]:
        """Scan once; update :meth:`current`, call the listeners and return the events."""
        present = scan_media(self.roots, self.exclude)
        with self._lock:
            known = dict(self._media)
        events: list[MediaEvent] = []
        for path in present:
            if path not in known:
                events.append(MediaEvent("appeared", describe_media(path)))
        present_set = set(present)
        for path, media in known.items():
            if path not in present_set:
                events.append(MediaEvent("disappeared", media))
        with self._lock:
            for event in events:
                if event.kind == "appeared":
                    self._media[event.media.path] = event.media
                else:
                    self._media.pop(event.media.path, None)
        for event in events:
            log.info(
                "media_" + event.kind,
                dicomdir=event.media.has_dicomdir,
                files=event.media.file_count,
            )
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("media_listener_failed")
        return events

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="media-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.poll()
            except Exception:
                log.exception("media_poll_failed")
            if self._stop.wait(self.interval_s):
                return
