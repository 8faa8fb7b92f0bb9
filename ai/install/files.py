"""The installer's file handling: the installation lock, the staging folder, folders created
without following links, and reading an install record (durable writes and folder fsyncs:
:mod:`radiant_common.durable`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ai.install.errors import TargetError
from ai.install.manifest import RECORD_NAME, FileEntry, hash_file

STAGING = ".staging"
LOCK = ".install.lock"


@contextlib.contextmanager
def locked(models: Path) -> Iterator[None]:
    models.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(models / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TargetError("another model installation is running; try again later") from None
        yield
    finally:
        os.close(fd)


def drop_staging(staging: Path) -> None:
    """Remove one staging folder, and ``.staging`` itself once empty."""
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging.parent.rmdir()


def safe_dirs(root: Path, rel: str) -> Path:
    """``root/<folders of rel>`` created one by one, refusing anything that is not a folder."""
    current = root
    for part in rel.split("/")[:-1]:
        current = current / part
        try:
            mode = current.lstat().st_mode
        except FileNotFoundError:
            current.mkdir(mode=0o700)
            continue
        if not stat.S_ISDIR(mode):
            raise TargetError(f"{current} is not a folder (a symbolic link or a file); refused")
    return current / rel.split("/")[-1]


def matches(path: Path, entry: FileEntry) -> bool:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode) or path.stat().st_size != entry.size:
        return False
    return hash_file(path) == (entry.size, entry.sha256)


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
