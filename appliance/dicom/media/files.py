"""Reading files from removable media, read-only: a file is opened only after its real path
(symbolic links resolved) was checked to lie inside the media, never followed, created or
written. Also how names on ISO 9660 media fold (PS3.10 8.2 File IDs, PS3.12 Annex F) and
which folders an operating system keeps there.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

DICOMDIR = "DICOMDIR"
MAGIC_OFFSET = 128
MAGIC = b"DICM"
_CHUNK = 1 << 20
# Folders an operating system keeps on removable media; never DICOM.
_HOUSEKEEPING_DIRS = {"system volume information", "$recycle.bin", "recycler", "lost+found"}


class OutsideMedia(Exception):
    """A DICOMDIR reference that leaves the media; never opened."""


class Unreadable(Exception):
    """A file that cannot be read; the message is the reason (no path)."""


@dataclass(frozen=True)
class Item:
    """One unit of work: a file to read (``real`` set) or a reference already judged."""

    rel: str
    real: Path | None
    size: int
    referenced: bool  # named by the DICOMDIR: imported whatever its first bytes are
    refused: str | None = None
    error: str | None = None
    skipped: str | None = None


def fold_name(name: str) -> str:
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
                if fold_name(entry.name) == DICOMDIR.casefold() and entry.is_file():
                    return Path(entry.path)
    except OSError:
        return None
    return None


def describe(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "cannot read: permission denied"
    if exc.errno == errno.ELOOP:
        return "cannot read: the file was replaced by a symbolic link"
    return f"cannot read: {exc.strerror or exc.__class__.__name__}"


def read_media_file(real: Path, limit: int, *, require_magic: bool = False) -> bytes | None:
    """Read the regular file ``real`` (no symlinks followed, never created or written).

    With ``require_magic``, return None when the file lacks the ``DICM`` prefix (only its first
    132 bytes are read then). Raises :class:`Unreadable` with the reason.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise Unreadable(describe(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
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
                raise Unreadable(f"larger than RADIANT_UPLOAD_MAX_MB ({limit >> 20} MB)")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(describe(exc)) from None
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


def inside(root: Path, candidate: Path) -> Path:
    """The real path of ``candidate``; :class:`OutsideMedia` when it resolves outside ``root``."""
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(root):
        raise OutsideMedia("resolves outside the media (through a symbolic link)")
    return real


def stat_item(root: Path, rel: str, candidate: Path, *, referenced: bool) -> Item:
    """An item for ``candidate``: refused if it escapes ``root``, an error if it cannot be read."""
    try:
        real = inside(root, candidate)
    except OutsideMedia as exc:
        return Item(rel, None, 0, referenced, refused=str(exc))
    try:
        info = os.stat(real)
    except FileNotFoundError:
        reason = (
            "referenced by the DICOMDIR but not found on the media"
            if referenced
            else "cannot read: the file vanished or is a broken link"
        )
        return Item(rel, None, 0, referenced, error=reason)
    except OSError as exc:
        return Item(rel, None, 0, referenced, error=describe(exc))
    if not stat.S_ISREG(info.st_mode):
        return Item(rel, None, 0, referenced, error="not a regular file")
    return Item(rel, real, info.st_size, referenced)


def ignored_dir(name: str) -> bool:
    return name.startswith(".") or name.casefold() in _HOUSEKEEPING_DIRS
