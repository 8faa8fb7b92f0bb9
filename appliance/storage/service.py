"""Durable files under one root directory, addressed by POSIX relative keys.

A write goes to a ``.tmp-*`` file in the destination directory, is flushed and fsynced, renamed
over the destination with ``os.replace`` and then the directory is fsynced, so after ``put``
returns the object survives a power cut and a reader never sees a half-written object. A crash
mid-write leaves only a ``.tmp-*`` file, which :meth:`ObjectStore.remove_partials` deletes at
start-up and :meth:`ObjectStore.iter_keys` never lists.

Keys are checked before any file system call: no absolute path, no empty, ``.`` or ``..``
segment, no NUL or backslash, no segment starting with ``.tmp-``, and the resolved path must stay
under the root. DICOM UIDs from the network go through :func:`instance_key`, which turns any UID
that is not a plain PS3.5 UID into a hash, so a hostile UID can neither escape the root nor
collide with another UID.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from appliance.storage.models import DigestMismatch, FetchBack, StoredObject
from radiant_common.durable import fsync_dir, replace

TEMP_PREFIX = ".tmp-"
DICOM_PREFIX = "dicom"
CHUNK_SIZE = 1 << 20
UID_MAX_LENGTH = 64  # PS3.5 9.1
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
# Directories whose entry is known to be fsynced, kept per store to avoid re-syncing the parents
# of a series directory on every instance. Bounded: when full it is cleared (costing only fsyncs).
_DURABLE_DIRS_MAX = 4096


class UnsafeKey(ValueError):
    """An object key that is malformed or would resolve outside the store's root."""


def uid_segment(uid: str) -> str:
    """Path segment for a UID: the UID itself if it is a plain PS3.5 UID, else ``h-<sha256>``.

    Plain means ASCII digits in dot-separated components, at most 64 characters. Anything else
    (slashes, ``..``, NUL, spaces, non-ASCII, empty, overlong) becomes ``h-`` followed by the
    SHA-256 hex of its UTF-8 bytes, which never matches the plain form, so distinct UIDs give
    distinct segments.
    """
    if len(uid) <= UID_MAX_LENGTH and _UID.fullmatch(uid):
        return uid
    # surrogatepass: a UID decoded with surrogateescape hashes (injectively) instead of raising
    return "h-" + hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()


def instance_key(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Key of a DICOM instance: ``dicom/<study>/<series>/<sop>.dcm`` with each UID made safe."""
    return "/".join(
        (
            DICOM_PREFIX,
            uid_segment(study_uid),
            uid_segment(series_uid),
            uid_segment(sop_uid) + ".dcm",
        )
    )


def _check_segments(key: str, what: str) -> list[str]:
    if not isinstance(key, str):
        raise UnsafeKey(f"{what} must be a str, not {type(key).__name__}")
    if not key:
        raise UnsafeKey(f"{what} is empty")
    if "\x00" in key:
        raise UnsafeKey(f"{what} {key!r} contains a NUL character")
    if "\\" in key:
        raise UnsafeKey(f"{what} {key!r} contains a backslash")
    if key.startswith("/"):
        raise UnsafeKey(f"{what} {key!r} is an absolute path")
    segments = key.split("/")
    for segment in segments:
        if not segment:
            raise UnsafeKey(f"{what} {key!r} has an empty path segment")
        if segment in (".", ".."):
            raise UnsafeKey(f"{what} {key!r} has a {segment!r} path segment")
        if segment.startswith(TEMP_PREFIX):
            raise UnsafeKey(f"{what} {key!r} has a segment starting with {TEMP_PREFIX!r}")
    return segments


def _missing_dirs(directory: Path, stop: Path) -> list[Path]:
    """``directory`` and its ancestors below ``stop`` that do not exist, deepest first."""
    missing: list[Path] = []
    current = directory
    while current != stop and not current.is_dir():
        missing.append(current)
        current = current.parent
    return missing


class ObjectStore:
    """Files under ``root`` (the appliance uses ``<data_dir>/objects``), written atomically.

    Objects are created with mode 0600. Empty directories are left in place by :meth:`delete`
    (removing them would race with a concurrent :meth:`put` into the same directory).

    ``fetch_back`` copies an evicted object back from the bucket; the sync layer sets it when
    the services are composed (None: evicted files cannot be restored). Readers of instance
    files go through :func:`appliance.storage.instances.instance_path`, which uses it.
    """

    def __init__(self, root: Path) -> None:
        root = Path(root).absolute()
        created = _missing_dirs(root, stop=Path(root.anchor))
        for directory in reversed(created):
            directory.mkdir(exist_ok=True)
        for directory in created:
            fsync_dir(directory.parent)
        self.root = root.resolve()
        self.fetch_back: FetchBack | None = None
        self._durable_dirs: set[Path] = set()
        self._safe_dirs: set[Path] = set()
        self._lock = threading.Lock()

    # -- keys ---------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Absolute path of ``key`` under the root; raises :class:`UnsafeKey` if it is unsafe."""
        segments = _check_segments(key, "object key")
        candidate = self.root.joinpath(*segments)
        # resolve() follows symlinks already on disk, so a link inside the root that points
        # elsewhere is refused as well. Directories found safe are remembered (the store never
        # creates links), so a series' instances do not each walk the whole path.
        parent = candidate.parent
        if parent not in self._safe_dirs:
            if not parent.resolve().is_relative_to(self.root):
                raise UnsafeKey(f"object key {key!r} resolves outside the store root")
            if parent.is_dir():
                with self._lock:
                    if len(self._safe_dirs) >= _DURABLE_DIRS_MAX:
                        self._safe_dirs.clear()
                    self._safe_dirs.add(parent)
        if candidate.is_symlink() and not candidate.resolve().is_relative_to(self.root):
            raise UnsafeKey(f"object key {key!r} resolves outside the store root")
        return candidate

    # -- writing ------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO) -> StoredObject:
        """Write ``data`` (bytes or a binary stream read to its end) durably as ``key``.

        Replaces an existing object atomically. On any error the temp file is removed and the
        previous object, if any, is left as it was.
        """
        dest = self.path(key)
        pending = self._make_parents(dest.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=dest.parent)
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                    digest.update(data)
                    size = memoryview(data).nbytes
                else:
                    while chunk := data.read(CHUNK_SIZE):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(dest.parent)
        self._sync_parents(pending)
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def create(self, key: str, data: bytes) -> bool:
        """Create ``key`` (which must not exist) with ``data``, durably; False if it exists.

        For objects that only an index row makes visible (DICOM instances): the file is
        created under its final name, written, fsynced, and its directory fsynced. Unlike
        :meth:`put` there is no rename, which saves the file system a second metadata commit
        per object (on ext4, fsync of a new file commits its directory entry with it, so the
        directory fsync that follows, kept for file systems that do not, finds nothing left
        to write). The price: a crash mid-write leaves a partial file under the final name;
        no index row points to it (the row is committed only after this returns), so start-up
        recovery finds it as stored-but-not-indexed and sets it aside. No digest is computed:
        the caller hashes the bytes it holds (meanwhile, on its own thread).
        """
        dest = self.path(key)
        pending = self._make_parents(dest.parent)
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        try:
            view = memoryview(data)
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            dest.unlink(missing_ok=True)
            raise
        os.close(fd)
        fsync_dir(dest.parent)
        self._sync_parents(pending)
        return True

    def put_file(self, key: str, src: Path) -> StoredObject:
        """Copy the file ``src`` durably into the store as ``key``."""
        with open(src, "rb") as stream:
            return self.put(key, stream)

    def put_fetched(
        self, key: str, fetch: FetchBack, *, size: int, sha256: str
    ) -> StoredObject:
        """Store as ``key`` the file that ``fetch(key, temp)`` writes, durably, only if it has
        ``size`` bytes and SHA-256 ``sha256`` (else :class:`DigestMismatch`, nothing replaced).

        The temporary file sits in the destination directory under a ``.tmp-`` name, so an
        interrupted fetch is never listed and is removed at start-up like any partial write.
        """
        dest = self.path(key)
        pending = self._make_parents(dest.parent)
        tmp = dest.with_name(f"{TEMP_PREFIX}fetch-{secrets.token_hex(8)}")
        try:
            fetch(key, tmp)
            digest = hashlib.sha256()
            length = 0
            with open(tmp, "rb+") as stream:
                while chunk := stream.read(CHUNK_SIZE):
                    digest.update(chunk)
                    length += len(chunk)
                if length != size or digest.hexdigest() != sha256:
                    raise DigestMismatch(
                        f"{key}: fetched {length} bytes with SHA-256 {digest.hexdigest()}, "
                        f"expected {size} bytes with SHA-256 {sha256}"
                    )
                os.fchmod(stream.fileno(), 0o600)
                os.fsync(stream.fileno())
            replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        self._sync_parents(pending)
        return StoredObject(key=key, size=length, sha256=sha256)

    def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Remove ``key`` and fsync its directory; a missing key raises unless ``missing_ok``."""
        target = self.path(key)
        try:
            target.unlink()
        except FileNotFoundError:
            if missing_ok:
                return
            raise
        fsync_dir(target.parent)

    def remove_partials(self) -> int:
        """Delete ``.tmp-*`` files left by an interrupted write; returns how many.

        Meant for start-up, before any :meth:`put` can be in flight.
        """
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            partials = [name for name in filenames if name.startswith(TEMP_PREFIX)]
            for name in partials:
                Path(dirpath, name).unlink(missing_ok=True)
            if partials:
                fsync_dir(Path(dirpath))
                removed += len(partials)
        return removed

    def _make_parents(self, directory: Path) -> list[Path]:
        """Create ``directory`` and its missing ancestors; return those whose entry needs a sync.

        The list runs from ``directory`` upwards, both contiguous chains: the directories not yet
        known durable (so ones just created by another writer that has not synced yet are synced
        here too) or, if longer, the ones missing on disk (say, removed behind the store's back).
        """
        pending: list[Path] = []
        current = directory
        with self._lock:
            while current != self.root and current not in self._durable_dirs:
                pending.append(current)
                current = current.parent
        missing = _missing_dirs(directory, stop=self.root)
        for created in reversed(missing):
            created.mkdir(exist_ok=True)
        return pending if len(pending) >= len(missing) else missing

    def _sync_parents(self, pending: list[Path]) -> None:
        for directory in pending:
            fsync_dir(directory.parent)
        if pending:
            with self._lock:
                if len(self._durable_dirs) + len(pending) > _DURABLE_DIRS_MAX:
                    self._durable_dirs.clear()
                self._durable_dirs.update(pending)

    # -- reading ------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """Open ``key`` for reading (binary); the caller closes it."""
        return open(self.path(key), "rb")

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        return self.path(key).is_file()

    def hash_of(self, key: str) -> StoredObject:
        """Re-read ``key`` from disk and return its current size and SHA-256."""
        digest = hashlib.sha256()
        size = 0
        with self.open(key) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, in sorted order; temp files are never listed.

        The prefix is checked at once (:class:`UnsafeKey`). Sorting is by the key string: the
        walk visits each directory's entries ordered by ``name + "/"`` for directories and
        ``name`` for files, which yields exactly that order without holding all keys in memory.
        """
        head, _, rest = prefix.rpartition("/")
        if prefix.startswith("/"):
            raise UnsafeKey(f"key prefix {prefix!r} is an absolute path")
        if "\x00" in rest or "\\" in rest:
            raise UnsafeKey(f"key prefix {prefix!r} contains a NUL or backslash")
        if head:
            return self._walk(self.path(head), head + "/", rest)
        return self._walk(self.root, "", rest)

    def _walk(self, directory: Path, key_prefix: str, name_prefix: str) -> Iterator[str]:
        entries: list[tuple[str, str, bool]] = []
        try:
            with os.scandir(directory) as scan:
                for entry in scan:
                    name = entry.name
                    if name.startswith(TEMP_PREFIX) or not name.startswith(name_prefix):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        entries.append((name + "/", name, True))
                    elif entry.is_file(follow_symlinks=False):
                        entries.append((name, name, False))
        except (FileNotFoundError, NotADirectoryError):
            return
        entries.sort()
        for _order, name, is_dir in entries:
            if is_dir:
                yield from self._walk(directory / name, f"{key_prefix}{name}/", "")
            else:
                yield key_prefix + name

    def free_bytes(self) -> int:
        """Free space on the file system holding the root, in bytes."""
        return shutil.disk_usage(self.root).free
