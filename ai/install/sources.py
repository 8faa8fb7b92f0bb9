"""Where a checkpoint's files come from: a local folder (a USB stick, a copy) or an HTTP(S)
mirror (a plain web server over the folder, e.g. on the hospital's network).

A source writes one file into a ``.part`` file of the staging folder and returns the size and
SHA-256 of what the ``.part`` file holds, hashed while it streams. The mirror resumes a ``.part``
left by an interrupted run with a ``Range`` request (a server that ignores it sends the whole
file again), retries connection errors, timeouts, 429 and 5xx a bounded number of times with
exponential waits, and never writes more bytes than the manifest's size.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urljoin, urlsplit

import httpx

from ai.install.errors import ManifestError, SourceError, VerificationError
from ai.install.manifest import CHUNK, MANIFEST_NAME, MAX_MANIFEST_BYTES, FileEntry

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Source(Protocol):
    """A place to read a manifest and checkpoint files from."""

    kind: str

    def describe(self) -> str: ...

    def read_manifest(self) -> bytes: ...

    def fetch(self, entry: FileEntry, part: Path) -> tuple[int, str]: ...

    def close(self) -> None: ...


def _open_part(part: Path, *, append: bool) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    return os.open(part, flags, 0o600)


def _hash_prefix(part: Path) -> tuple[int, hashlib._Hash]:
    """Size and running SHA-256 of an existing ``.part`` file (0 and empty when absent)."""
    digest = hashlib.sha256()
    try:
        fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return 0, digest
    size = 0
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest


def read_manifest_file(path: Path) -> bytes:
    """A manifest from a local file (at most MAX_MANIFEST_BYTES + 1 bytes are read)."""
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(
            f"no manifest at {path}: make one on a trusted copy with `radiant model manifest "
            "DIR`, or name it with --manifest"
        ) from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror})") from None


def _too_large(entry: FileEntry) -> VerificationError:
    return VerificationError(
        f"{entry.path}: the source holds more than the {entry.size} bytes the manifest lists"
    )


class FolderSource:
    """Files under a local folder; every path is walked without following symbolic links."""

    kind = "folder"

    def __init__(self, root: Path, manifest: Path | None = None) -> None:
        if not root.is_dir():
            raise SourceError(f"{root}: no such folder")
        self.root = root.resolve()
        self.manifest_path = manifest

    def describe(self) -> str:
        return str(self.root)

    def read_manifest(self) -> bytes:
        return read_manifest_file(self.manifest_path or self.root / MANIFEST_NAME)

    def _open(self, entry: FileEntry) -> int:
        """An fd of ``root/entry.path``, refusing symbolic links on the way and at the end."""
        current = self.root
        parts = entry.path.split("/")
        for folder in parts[:-1]:
            current = current / folder
            try:
                mode = current.lstat().st_mode
            except FileNotFoundError:
                raise SourceError(f"{entry.path}: missing from {self.root}") from None
            if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
                raise SourceError(
                    f"{entry.path}: {current} is a symbolic link or not a folder; refused"
                )
        target = current / parts[-1]
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise SourceError(f"{entry.path}: missing from {self.root}") from None
        except OSError as exc:
            if target.is_symlink():
                raise SourceError(
                    f"{entry.path}: is a symbolic link in {self.root}; refused"
                ) from None
            raise SourceError(f"{entry.path}: cannot be read ({exc.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SourceError(f"{entry.path}: not a regular file in {self.root}")
        return fd

    def fetch(self, entry: FileEntry, part: Path) -> tuple[int, str]:
        fd = self._open(entry)
        with os.fdopen(fd, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size != entry.size:
                raise VerificationError(
                    f"{entry.path}: {size} bytes in {self.root}, the manifest lists {entry.size}"
                )
            digest = hashlib.sha256()
            written = 0
            with os.fdopen(_open_part(part, append=False), "wb") as out:
                while chunk := source.read(CHUNK):
                    written += len(chunk)
                    if written > entry.size:
                        raise _too_large(entry)
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        return written, digest.hexdigest()

    def close(self) -> None:
        return None


class _Transient(Exception):
    """A failure worth retrying."""


class MirrorSource:
    """Files under a base URL (``<base>/<path>``); the manifest at ``<base>/radiant-manifest.json``
    unless another URL or local file is named."""

    kind = "mirror"

    def __init__(
        self,
        base_url: str,
        manifest: str | None = None,
        *,
        attempts: int = 4,
        wait_s: float = 1.0,
        max_wait_s: float = 30.0,
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SourceError(f"{base_url!r} is not an http:// or https:// URL")
        if parts.username or parts.password:
            raise SourceError("the mirror URL must not carry credentials")
        if not 1 <= attempts <= 20:
            raise SourceError("attempts must be 1 to 20")
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self.manifest = manifest
        self.attempts = attempts
        self.wait_s = wait_s
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.requests = 0
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)),
            follow_redirects=True,
            transport=transport,
        )

    def describe(self) -> str:
        parts = urlsplit(self.base)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    def url(self, path: str) -> str:
        return urljoin(self.base, quote(path, safe="/"))

    def _retrying(self, what: str, action: Callable[[], tuple[int, str] | bytes]) -> object:
        wait = self.wait_s
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except _Transient as exc:
                last = str(exc)
            except (httpx.TransportError, httpx.StreamError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < self.attempts:
                self.sleep(wait)
                wait = min(wait * 2, self.max_wait_s)
        raise SourceError(
            f"{what}: the mirror {self.describe()} did not answer after {self.attempts} "
            f"attempts ({last})",
            resumable=True,
        )

    def _check_status(self, response: httpx.Response, what: str) -> None:
        if response.status_code in RETRY_STATUS:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code == 404:
            raise SourceError(f"{what}: missing from the mirror (HTTP 404 at {response.url})")
        if response.status_code >= 400:
            raise SourceError(f"{what}: the mirror answered HTTP {response.status_code}")

    def read_manifest(self) -> bytes:
        if self.manifest is not None and "://" not in self.manifest:
            return read_manifest_file(Path(self.manifest))
        url = self.manifest or self.url(MANIFEST_NAME)

        def get() -> bytes:
            self.requests += 1
            with self.client.stream("GET", url) as response:
                self._check_status(response, "the manifest")
                raw = b""
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_MANIFEST_BYTES:
                        raise ManifestError(
                            f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes"
                        )
                return raw

        try:
            result = self._retrying("the manifest", get)
        except SourceError as exc:
            raise SourceError(str(exc)) from None  # nothing staged yet: not resumable
        assert isinstance(result, bytes)
        return result

    def fetch(self, entry: FileEntry, part: Path) -> tuple[int, str]:
        result = self._retrying(entry.path, lambda: self._fetch_once(entry, part))
        assert isinstance(result, tuple)
        return result

    def _fetch_once(self, entry: FileEntry, part: Path) -> tuple[int, str]:
        have, digest = _hash_prefix(part)
        if have > entry.size:
            have, digest = 0, hashlib.sha256()
        if have == entry.size:
            return have, digest.hexdigest()
        headers = {"Range": f"bytes={have}-"} if have else {}
        self.requests += 1
        with self.client.stream("GET", self.url(entry.path), headers=headers) as response:
            if response.status_code == 416:
                # Our part is not a prefix the server recognises: start again.
                have, digest = 0, hashlib.sha256()
                with os.fdopen(_open_part(part, append=False), "wb"):
                    pass
                raise _Transient("HTTP 416 on resume; restarting the file")
            self._check_status(response, entry.path)
            append = False
            if have and response.status_code == 206:
                start = response.headers.get("content-range", "").removeprefix("bytes ")
                append = start.split("-", 1)[0].strip() == str(have)
            if not append:
                have, digest = 0, hashlib.sha256()
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and have + int(length) > entry.size:
                raise _too_large(entry)
            written = have
            with os.fdopen(_open_part(part, append=append), "ab" if append else "wb") as out:
                try:
                    for chunk in response.iter_bytes():
                        written += len(chunk)
                        if written > entry.size:
                            raise _too_large(entry)
                        digest.update(chunk)
                        out.write(chunk)
                finally:
                    out.flush()
                    os.fsync(out.fileno())
        if written < entry.size:
            raise _Transient(
                f"{entry.path}: the transfer ended after {written} of {entry.size} bytes"
            )
        return written, digest.hexdigest()

    def close(self) -> None:
        self.client.close()


def open_source(
    location: str, manifest: str | None = None, **mirror_options: object
) -> FolderSource | MirrorSource:
    """A :class:`MirrorSource` for an http(s) URL, else a :class:`FolderSource`."""
    if location.startswith(("http://", "https://")):
        return MirrorSource(location, manifest, **mirror_options)  # type: ignore[arg-type]
    if "://" in location:
        raise SourceError(f"{location!r}: only http://, https:// or a local folder")
    return FolderSource(Path(location), Path(manifest) if manifest else None)
