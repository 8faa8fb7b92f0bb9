"""What a web upload may hold: its limits, what a file is by its first bytes, names safe to
echo back, and the checks of zip entries (paths, links, encryption, sizes and compression
ratios, before and while they are inflated).
"""

from __future__ import annotations

import re
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from appliance.config import Settings

if TYPE_CHECKING:
    pass


MIB = 1 << 20
GB = 1_000_000_000  # RADIANT_MIN_FREE_GB is in decimal gigabytes, as for the receiver
FIELD = "files"
UPLOADS_DIR = "uploads"
MAX_INSTANCE_BYTES = 1024 * MIB
"""One uploaded file or archive entry; it is held in memory while it is ingested."""
MAX_COMPRESSION_RATIO = 100
"""Uncompressed : compressed size above which an entry is refused as a zip bomb ..."""
RATIO_CHECKED_FROM_BYTES = 64 * 1024
"""... once it expands to at least this much (tiny entries compress well legitimately); the
archive as a whole may not expand more than the ratio either (beyond this slack), so many
small entries cannot add up to a bomb."""
MAX_ARCHIVE_ENTRIES = 100_000
ARCHIVE_EXPANSION = 4
"""An archive may expand to this many times the upload limit in total."""
FEED_BYTES = 256 * 1024
"""The body is handed to the parser in pieces of at most this size, so that a file that ends
early in a large network chunk is ingested before the limit check of later bytes."""
MAX_NAME_CHARS = 255
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")

NOT_DICOM = "not DICOM: no 'DICM' marker at byte 128 (PS3.10 7.1) and not a zip archive; not stored"
NESTED_ZIP = "a zip archive inside a zip archive is not expanded; upload it on its own"
DICOMDIR = (
    "DICOMDIR is a media index, not an image: skipped (the files it lists are read on their own)"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class UploadLimits:
    """Size limits of one upload request (bytes) and of the archives in it."""

    max_total_bytes: int
    max_archive_bytes: int
    max_instance_bytes: int = MAX_INSTANCE_BYTES
    max_ratio: int = MAX_COMPRESSION_RATIO
    ratio_from_bytes: int = RATIO_CHECKED_FROM_BYTES
    max_entries: int = MAX_ARCHIVE_ENTRIES
    min_free_bytes: int = 0  # the free-disk watermark (RADIANT_MIN_FREE_GB), as for C-STORE

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        total = settings.upload_max_mb * MIB
        return cls(
            max_total_bytes=total,
            max_archive_bytes=total * ARCHIVE_EXPANSION,
            min_free_bytes=int(settings.min_free_gb * GB),
        )


def sniff(head: bytes, name: str) -> Literal["dicom", "zip", "other"]:
    """What the first 132 bytes of a file say it is."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:4] in ZIP_MAGIC or name.lower().endswith(".zip"):
        return "zip"
    if len(head) >= 8:
        # A data set without the Part 10 header begins with group 0002 or 0008 (either order).
        if int.from_bytes(head[:2], "little") in (0x0002, 0x0008):
            return "dicom"
        if int.from_bytes(head[:2], "big") == 0x0008:
            return "dicom"
    return "other"


def clean_name(name: str) -> str:
    """A file or entry name safe to echo back: no control characters, bounded length."""
    cleaned = _CONTROL.sub("?", name).strip() or "(unnamed)"
    return cleaned if len(cleaned) <= MAX_NAME_CHARS else "..." + cleaned[-(MAX_NAME_CHARS - 3) :]


def entry_problem(info: zipfile.ZipInfo, limits: UploadLimits) -> str | None:
    """Why a zip entry is refused without being read, or None."""
    name = info.filename.replace("\\", "/")
    if "\x00" in info.filename:
        return "entry name contains a NUL character: refused"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "entry has an absolute path: refused"
    if ".." in name.split("/"):
        return "entry path contains '..' (path traversal): refused"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "entry is a symbolic link: refused"
    if info.flag_bits & 0x1:
        return "entry is encrypted: it cannot be read"
    if name.lower().endswith(".zip"):
        return NESTED_ZIP
    if info.file_size > limits.max_instance_bytes:
        return (
            f"entry expands to {mib(info.file_size)}, over the {mib(limits.max_instance_bytes)}"
            " limit for one file: refused"
        )
    if info.file_size >= limits.ratio_from_bytes and info.file_size > limits.max_ratio * max(
        info.compress_size, 1
    ):
        ratio = info.file_size // max(info.compress_size, 1)
        return (
            f"entry is compressed {ratio}:1, over the {limits.max_ratio}:1 limit: refused as a "
            "possible zip bomb"
        )
    return None


class EntryRefused(Exception):
    """A zip entry refused while it was inflated, with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_entry(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limits: UploadLimits,
    budget: int,
    spool_dir: Path,
) -> bytes:
    """The entry's bytes, counted while they are inflated: a size or ratio that the header
    understated is caught here as well (as is a total beyond ``budget``).

    The inflated chunks go to a private unnamed file in ``spool_dir`` and are read back in one
    piece of the exact size: the entry is in memory once, not as chunks plus their join."""
    cap = min(info.file_size, limits.max_instance_bytes)
    size = 0
    with archive.open(info) as stream, tempfile.TemporaryFile(dir=spool_dir) as spool:
        while chunk := stream.read(MIB):
            size += len(chunk)
            if size > cap:
                raise EntryRefused("entry inflates beyond its declared or allowed size: refused")
            if size > budget:
                raise EntryRefused(
                    f"the archive expands beyond {mib(limits.max_archive_bytes)} in total: "
                    "this entry was refused"
                )
            if size >= limits.ratio_from_bytes and size > limits.max_ratio * max(
                info.compress_size, 1
            ):
                raise EntryRefused(
                    f"entry inflates more than {limits.max_ratio}:1: refused as a possible zip bomb"
                )
            spool.write(chunk)
        spool.seek(0)
        return spool.read()


def mib(size: int) -> str:
    """A size in MiB for messages."""
    return f"{size / MIB:.1f} MiB" if size < 10 * MIB else f"{size // MIB} MiB"
