"""Files that survive a power cut: write, fsync the file, fsync its folder, replace atomically.

On POSIX file systems a rename or a new directory entry is durable only once the folder itself
is fsynced (fsync(2); ext4 and XFS document it), and a file's bytes only once the file is.
:func:`write_atomic` does the full sequence: a temporary file beside the target (so the rename
stays on one file system), written and fsynced, renamed over the target with ``os.replace``
(atomic: a reader sees the old or the new file, never half of one) and the folder fsynced.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (files created, renamed or removed in it) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Create ``path`` (which must not exist: ``FileExistsError``) with ``data`` and fsync it,
    then its folder unless ``sync_dir`` is false (a caller that fsyncs the folder once after
    many files). A failed write removes the partial file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def temp_beside(path: Path) -> Path:
    """A fresh, unused name for a temporary file in the folder of ``path``."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}-{secrets.token_hex(6)}")


def replace(source: Path, target: Path) -> None:
    """Rename the (already fsynced) file ``source`` over ``target`` atomically and fsync the
    folder of ``target``."""
    os.replace(source, target)
    fsync_dir(target.parent)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, replace: bool = True) -> None:
    """Write ``data`` as ``path`` durably and atomically (see the module docstring).

    ``mode`` applies to the new file whatever the umask. With ``replace`` false an existing
    ``path`` is kept and ``FileExistsError`` raised (the new file is linked, not renamed, in
    place). On any error the temporary file is removed and ``path`` is left as it was.
    """
    tmp = temp_beside(path)
    try:
        write_new(tmp, data, mode=mode, sync_dir=False)
        os.chmod(tmp, mode)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
