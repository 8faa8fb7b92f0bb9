"""The model manifest: which files make a checkpoint, with their sizes and SHA-256.

A manifest is a JSON object::

    {
      "format": "radiant-model-manifest/1",
      "model_id": "google/medgemma-1.5-4b-it",
      "revision": "<the hub commit, or any label the site trusts>",
      "license": "<terms the checkpoint is used under>",
      "files": [{"path": "config.json", "size": 1234, "sha256": "<64 hex>"}, ...]
    }

Paths are relative, ``/``-separated and confined to the checkpoint folder: absolute paths,
``.`` and ``..`` segments, backslashes, control characters, duplicates and a file that is also
another file's folder are refused. ``config.json`` must be listed. :func:`make_manifest` builds
one from a trusted copy (hidden entries such as ``.cache/`` are left out; symbolic links are
refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ai.install.errors import ManifestError

FORMAT = "radiant-model-manifest/1"
#: The manifest's file name inside a checkpoint folder or at a mirror's root.
MANIFEST_NAME = "radiant-manifest.json"
#: What the installer records beside the files (not part of the manifest).
RECORD_NAME = ".radiant-install.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_FILES = 10_000
CHUNK = 1024 * 1024
DEFAULT_MODEL_ID = "google/medgemma-1.5-4b-it"
DEFAULT_LICENSE = (
    "Health AI Developer Foundations terms of use "
    "(https://developers.google.com/health-ai-developer-foundations/terms)"
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RESERVED = frozenset({MANIFEST_NAME, RECORD_NAME})


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a checkpoint."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed, validated manifest and the SHA-256 of its bytes."""

    model_id: str
    revision: str
    license: str
    files: tuple[FileEntry, ...]
    digest: str
    raw: bytes

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def ordered(self) -> list[FileEntry]:
        """``config.json`` first (checked before any weight is fetched), then small to large."""
        return sorted(self.files, key=lambda e: (e.path != "config.json", e.size, e.path))


def check_path(value: object, where: str) -> str:
    """A relative path that stays inside the checkpoint folder, or ManifestError."""
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: path must be a non-empty string")
    if "\\" in value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ManifestError(f"{where}: path {value!r} has a backslash or a control character")
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise ManifestError(f"{where}: path {value!r} is absolute; paths must be relative")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ManifestError(
            f"{where}: path {value!r} has an empty, '.' or '..' segment; paths must stay "
            "inside the checkpoint folder"
        )
    if any(len(part.encode()) > 255 for part in parts) or len(value.encode()) > 1024:
        raise ManifestError(f"{where}: path {value!r} is too long")
    if value in _RESERVED:
        raise ManifestError(f"{where}: {value!r} is reserved for the installer")
    return value


def _field(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise ManifestError(f"manifest field {name!r} must be a non-empty string")
    if len(value) > 4096 or any(ord(ch) < 32 and ch not in "\t\n" for ch in value):
        raise ManifestError(f"manifest field {name!r} is too long or has control characters")
    return value.strip()


def _file_entry(item: Any, where: str) -> FileEntry:
    """One ``files[]`` item: a safe relative path, a size and a SHA-256."""
    if not isinstance(item, dict):
        raise ManifestError(f"{where} must be an object with path, size and sha256")
    path = check_path(item.get("path"), where)
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where} ({path}): size must be a whole number of bytes >= 0")
    digest = item.get("sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
        raise ManifestError(f"{where} ({path}): sha256 must be 64 hexadecimal digits")
    return FileEntry(path=path, size=size, sha256=digest.lower())


def parse_manifest(raw: bytes) -> Manifest:
    """Validate manifest bytes (see the module docstring); ManifestError says what is wrong."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"the manifest is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError("the manifest must be a JSON object")
    if data.get("format") != FORMAT:
        raise ManifestError(f"manifest 'format' must be {FORMAT!r}, got {data.get('format')!r}")
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise ManifestError("manifest 'files' must be a non-empty list")
    if len(files) > MAX_FILES:
        raise ManifestError(f"the manifest lists more than {MAX_FILES} files")
    entries: list[FileEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(files):
        entry = _file_entry(item, f"files[{index}]")
        if entry.path in seen:
            raise ManifestError(f"files[{index}]: {entry.path!r} is listed twice")
        seen.add(entry.path)
        entries.append(entry)
    for entry in entries:
        for parent in PurePosixPath(entry.path).parents:
            if str(parent) in seen:
                raise ManifestError(
                    f"{parent} is listed as a file and as the folder of {entry.path}"
                )
    if "config.json" not in seen:
        raise ManifestError("the manifest does not list config.json; it is not a checkpoint")
    return Manifest(
        model_id=_field(data, "model_id"),
        revision=_field(data, "revision", ""),
        license=_field(data, "license", ""),
        files=tuple(entries),
        digest=hashlib.sha256(raw).hexdigest(),
        raw=raw,
    )


def hash_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a regular file, read in chunks (symbolic links are refused)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ManifestError(f"{path} is not a regular file")
        digest = hashlib.sha256()
        size = 0
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def checkpoint_files(root: Path) -> list[str]:
    """Relative paths of the regular files under ``root``, hidden entries and the installer's
    own files left out; ManifestError on a symbolic link or a special file."""
    found: list[str] = []
    for current, dirs, files in os.walk(root, followlinks=False):
        base = Path(current)
        for name in sorted(dirs):
            if name.startswith("."):
                dirs.remove(name)
            elif (base / name).is_symlink():
                raise ManifestError(
                    f"{base / name} is a symbolic link; copy the checkpoint with real files "
                    "(cp -rL, or download with --local-dir)"
                )
        for name in sorted(files):
            if name.startswith(".") or (base == root and name in _RESERVED):
                continue
            item = base / name
            mode = item.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ManifestError(
                    f"{item} is a symbolic link; copy the checkpoint with real files "
                    "(cp -rL, or download with --local-dir)"
                )
            if not stat.S_ISREG(mode):
                raise ManifestError(f"{item} is not a regular file")
            found.append(item.relative_to(root).as_posix())
    return sorted(found)


def make_manifest(
    root: Path,
    *,
    model_id: str = DEFAULT_MODEL_ID,
    revision: str = "",
    license_text: str = DEFAULT_LICENSE,
) -> bytes:
    """The manifest bytes for the checkpoint in ``root`` (every file read and hashed)."""
    if not root.is_dir():
        raise ManifestError(f"{root}: no such folder")
    files = checkpoint_files(root)
    entries = []
    for rel in files:
        check_path(rel, str(root / rel))
        size, digest = hash_file(root / rel)
        entries.append({"path": rel, "size": size, "sha256": digest})
    document = {
        "format": FORMAT,
        "model_id": model_id,
        "revision": revision,
        "license": license_text,
        "files": entries,
    }
    raw = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    parse_manifest(raw)  # the same checks an installer applies (config.json, paths)
    return raw
