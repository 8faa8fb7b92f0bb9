"""Web upload of DICOM files and zip archives: a streamed multipart body, ingested file by file.

The body is parsed as it arrives (never held in memory): each file part is written to a private
temp file under ``<data_dir>/uploads`` and, once complete, ingested through the one ingest path
(:meth:`appliance.dicom.ingest.Ingestor.ingest`, ``source="upload"``) before the next one is read.
So when the body goes over ``RADIANT_UPLOAD_MAX_MB`` (413), is malformed or is cut off, the files
received completely before that point are stored and acknowledged in the problem document, and
nothing else was stored: no file is ever half-ingested.

Zip archives are expanded in memory entry by entry, never onto disk by their names. Refused, each
with its reason and without stopping the rest: entries with absolute paths or ``..`` segments,
symbolic links, encrypted entries, entries over :data:`MAX_INSTANCE_BYTES` or compressed more than
:data:`MAX_COMPRESSION_RATIO`:1 (zip bombs), nested archives (reported, not expanded), DICOMDIR
indexes and anything that is not DICOM. A whole archive is refused when it is damaged or
truncated, has more than :data:`MAX_ARCHIVE_ENTRIES` entries or would expand beyond
:data:`ARCHIVE_EXPANSION` times the upload limit. Directory entries are skipped.

"Not DICOM" (rejected, not kept) means no ``DICM`` marker at byte 128 (PS3.10 7.1) and no data
set starting in group 0002 or 0008; anything that looks like DICOM goes to the ingestor, which
quarantines malformed instances with their bytes and a reason.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Literal

from anyio import CancelScope, to_thread
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.dicom.ingest import Ingestor, IngestResult, Outcome
from appliance.errors import AppError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from appliance.studies import service
from appliance.studies.models import FileResult, UploadCounts, UploadReport

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

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


class InsufficientStorage(AppError):
    status = 507
    title = "Insufficient storage"


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


def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / UPLOADS_DIR


def discard_partial_uploads(settings: Settings) -> int:
    """Delete temp files left by uploads cut off by a crash (never acknowledged); at start-up."""
    root = uploads_dir(settings)
    if not root.is_dir():
        return 0
    removed = 0
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed += 1
    return removed


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
            f"entry expands to {_mib(info.file_size)}, over the {_mib(limits.max_instance_bytes)}"
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
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: UploadLimits, budget: int
) -> bytes:
    """The entry's bytes, counted while they are inflated: a size or ratio that the header
    understated is caught here as well (as is a total beyond ``budget``)."""
    cap = min(info.file_size, limits.max_instance_bytes)
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as stream:
        while chunk := stream.read(MIB):
            size += len(chunk)
            if size > cap:
                raise EntryRefused("entry inflates beyond its declared or allowed size: refused")
            if size > budget:
                raise EntryRefused(
                    f"the archive expands beyond {_mib(limits.max_archive_bytes)} in total: "
                    "this entry was refused"
                )
            if size >= limits.ratio_from_bytes and size > limits.max_ratio * max(
                info.compress_size, 1
            ):
                raise EntryRefused(
                    f"entry inflates more than {limits.max_ratio}:1: refused as a possible zip bomb"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB" if size < 10 * MIB else f"{size // MIB} MiB"


@dataclass
class _Part:
    name: str
    path: Path
    stream: IO[bytes]
    size: int = 0
    unnamed: bool = False


@dataclass
class UploadSession:
    """Receives one multipart body piece by piece; runs in worker threads (blocking I/O).

    Each completed ``files`` part is processed as soon as its closing boundary is parsed.
    """

    ingestor: Ingestor
    actor: Actor
    limits: UploadLimits
    work_dir: Path
    boundary: bytes
    origin: str | None = None
    results: list[FileResult] = field(default_factory=list)
    received: int = 0
    file_parts: int = 0
    _parser: MultipartParser | None = None
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _header_name: bytes = b""
    _header_value: bytes = b""
    _current: _Part | None = None
    _done: list[_Part] = field(default_factory=list)
    _ended: bool = False

    def __post_init__(self) -> None:
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser = MultipartParser(self.boundary, callbacks)

    # -- parser callbacks ---------------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}
        self._current = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != FIELD.encode() or b"filename" not in options:
            return  # other form fields are read past and ignored
        raw = options[b"filename"].decode("utf-8", "replace")
        fd, temp = tempfile.mkstemp(prefix="part-", dir=self.work_dir)
        self._current = _Part(clean_name(raw), Path(temp), os.fdopen(fd, "wb"), unnamed=not raw)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.stream.write(data[start:end])
            self._current.size += end - start

    def _part_end(self) -> None:
        if self._current is not None:
            self._current.stream.close()
            self._done.append(self._current)
            self._current = None

    def _end(self) -> None:
        self._ended = True

    # -- driving ------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse ``data`` and process every file part it completed."""
        assert self._parser is not None
        self.received += len(data)
        try:
            self._parser.write(data)
        except FormParserError:
            self._drop_done()
            raise self.error(
                InvalidInput, "the multipart body is malformed; reading stopped there"
            ) from None
        while self._done:
            part = self._done.pop(0)
            try:
                self._process(part)
            finally:
                part.path.unlink(missing_ok=True)

    def finish(self) -> None:
        """The body has ended: it must have closed its last part and held a file."""
        if self.received == 0 or (self._ended and self.file_parts == 0):
            raise self.error(
                InvalidInput,
                f"no files: send one or more files (DICOM or .zip) in the multipart field "
                f"'{FIELD}'",
            )
        if not self._ended:
            raise self.error(
                InvalidInput,
                "the multipart body ended before its closing boundary (cut off); the file being "
                "received then was not stored",
            )

    def close(self) -> None:
        """Remove every temp file of this upload."""
        if self._current is not None:
            self._current.stream.close()
        self._drop_done()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def _drop_done(self) -> None:
        for part in self._done:
            part.path.unlink(missing_ok=True)
        self._done.clear()

    def too_large(self) -> AppError:
        limit = self.limits.max_total_bytes
        return self.error(
            PayloadTooLarge,
            f"the upload is larger than the {_mib(limit)} limit (RADIANT_UPLOAD_MAX_MB); "
            "reading stopped there",
        )

    def error(self, kind: type[AppError], detail: str) -> AppError:
        """An error whose problem document also lists what was already stored and kept."""
        report = self.report()
        kept = report.counts.stored + report.counts.duplicate
        if self.results:
            detail += (
                f". The {len(self.results)} file(s) received completely before that were "
                f"processed and are listed in 'files': {kept} are stored and kept"
            )
        else:
            detail += ". Nothing was stored"
        return kind(detail, **report.model_dump())

    # -- processing ---------------------------------------------------------------------------

    def _process(self, part: _Part) -> None:
        if part.unnamed and part.size == 0:
            return  # what a browser sends for a file input left empty
        self.file_parts += 1
        if part.size == 0:
            self._reject(part.name, None, "empty file")
            return
        with open(part.path, "rb") as stream:
            head = stream.read(132)
        kind = sniff(head, part.name)
        if PurePosixPath(part.name.replace("\\", "/")).name.upper() == "DICOMDIR":
            self._reject(part.name, None, DICOMDIR)
        elif kind == "zip":
            self._expand(part.path, part.name)
        elif kind == "other":
            self._reject(part.name, None, NOT_DICOM)
        elif part.size > self.limits.max_instance_bytes:
            self._reject(
                part.name,
                None,
                f"file is {_mib(part.size)}, over the {_mib(self.limits.max_instance_bytes)} "
                "limit for one file",
            )
        else:
            self._ingest(part.path.read_bytes(), part.name, None)

    def _expand(self, path: Path, archive_name: str) -> None:
        try:
            archive = zipfile.ZipFile(path)
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            OSError,
            ValueError,
            EOFError,
            NotImplementedError,  # a zip version or feature Python's reader does not support
        ):
            self._reject(
                archive_name,
                None,
                "not a readable zip archive: it is truncated or damaged (no central directory);"
                " nothing in it was read",
            )
            return
        with archive:
            # not ZipInfo.is_dir(): it indexes the last character and fails on an empty name
            entries = [info for info in archive.infolist() if not info.filename.endswith("/")]
            declared = sum(info.file_size for info in entries)
            if len(entries) > self.limits.max_entries:
                self._reject(
                    archive_name,
                    None,
                    f"the archive has {len(entries)} entries, over the limit of "
                    f"{self.limits.max_entries}; nothing in it was read",
                )
                return
            if declared > self.limits.max_archive_bytes:
                self._reject(
                    archive_name,
                    None,
                    f"the archive expands to {_mib(declared)}, over the "
                    f"{_mib(self.limits.max_archive_bytes)} limit for one archive (possible zip "
                    "bomb); nothing in it was read",
                )
                return
            expanded = 0
            overall = self.limits.max_ratio * max(path.stat().st_size, 1)
            for info in entries:
                name = clean_name(info.filename)
                problem = entry_problem(info, self.limits)
                if problem:
                    self._reject(name, archive_name, problem)
                    continue
                try:
                    data = read_entry(
                        archive, info, self.limits, self.limits.max_archive_bytes - expanded
                    )
                except EntryRefused as exc:
                    self._reject(name, archive_name, exc.reason)
                    continue
                except (
                    zipfile.BadZipFile,
                    zlib.error,
                    EOFError,
                    NotImplementedError,
                    OSError,  # a local header offset outside the file: EINVAL on seek
                    ValueError,
                ) as exc:
                    self._reject(
                        name,
                        archive_name,
                        f"the entry is damaged and cannot be read ({exc.__class__.__name__})",
                    )
                    continue
                except RuntimeError:
                    self._reject(name, archive_name, "entry is encrypted: it cannot be read")
                    continue
                if expanded + len(data) > overall + self.limits.ratio_from_bytes:
                    self._reject(
                        name,
                        archive_name,
                        f"the archive inflates more than {self.limits.max_ratio}:1 overall: "
                        "this entry was refused as a possible zip bomb",
                    )
                    continue
                expanded += len(data)
                kind = sniff(data[:132], name)
                if PurePosixPath(name.replace("\\", "/")).name.upper() == "DICOMDIR":
                    self._reject(name, archive_name, DICOMDIR)
                elif kind == "zip":
                    self._reject(name, archive_name, NESTED_ZIP)
                elif kind == "other":
                    self._reject(name, archive_name, NOT_DICOM)
                else:
                    self._ingest(data, name, archive_name)

    def _ingest(self, data: bytes, name: str, archive: str | None) -> None:
        floor = self.limits.min_free_bytes
        if floor and self.ingestor.store.free_bytes() < floor:
            raise self.error(
                InsufficientStorage,
                "the appliance's free disk space is below its watermark (RADIANT_MIN_FREE_GB):"
                " this file and the rest of the upload were not stored",
            )
        try:
            result = self.ingestor.ingest(
                data, source="upload", actor=self.actor, origin=self.origin
            )
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise self.error(
                    InsufficientStorage,
                    "the appliance ran out of disk space while storing the upload",
                ) from None
            raise
        self.results.append(self._result(result, name, archive))

    def _result(self, result: IngestResult, name: str, archive: str | None) -> FileResult:
        study_id = result.study_id
        if study_id is None and result.series_id is not None:
            study_id = service.study_of_series(self.ingestor.pool.get(), result.series_id)
        return FileResult(
            name=name,
            archive=archive,
            outcome=result.outcome.value,
            reason=result.reason,
            sop_instance_uid=result.sop_instance_uid,
            study_id=study_id,
            instance_id=result.instance_id if result.outcome != Outcome.QUARANTINED else None,
            quarantine_id=result.quarantine_id,
        )

    def _reject(self, name: str, archive: str | None, reason: str) -> None:
        self.results.append(
            FileResult(name=name, archive=archive, outcome="rejected", reason=reason)
        )

    def report(self) -> UploadReport:
        counts = UploadCounts()
        for item in self.results:
            setattr(counts, item.outcome, getattr(counts, item.outcome) + 1)
        studies = sorted(
            {r.study_id for r in self.results if r.study_id and r.outcome != "quarantined"}
        )
        return UploadReport(
            files=list(self.results),
            counts=counts,
            study_ids=studies,
            received_bytes=self.received,
        )


def _boundary(content_type: str | None) -> bytes:
    media, options = parse_options_header(content_type)
    if media != b"multipart/form-data":
        raise UnsupportedMediaType(
            f"send the files as multipart/form-data in the field '{FIELD}'"
            + (f", not {media.decode('latin-1')}" if media else "")
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInput("the multipart/form-data Content-Type has no boundary")
    return boundary


def _declared_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def receive(
    body: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    ingestor: Ingestor,
    settings: Settings,
    actor: Actor,
    limits: UploadLimits | None = None,
) -> UploadReport:
    """Read, store and report one multipart upload; one ``study.upload`` audit row.

    Raises 415 (not multipart), 422 (no files, malformed or cut-off body), 413 (over the limit)
    or 507 (disk full); their problem documents carry ``files``, ``counts`` and ``study_ids`` of
    what was already processed.
    """
    limits = limits or UploadLimits.from_settings(settings)
    boundary = _boundary(content_type)
    declared = _declared_length(content_length)
    root = uploads_dir(settings)
    root.mkdir(mode=0o700, exist_ok=True)
    session = UploadSession(
        ingestor=ingestor,
        actor=actor,
        limits=limits,
        work_dir=Path(tempfile.mkdtemp(prefix="upload-", dir=root)),
        boundary=boundary,
        origin=actor.client,
    )
    outcome, reason = "success", None
    try:
        if declared is not None and declared > limits.max_total_bytes:
            raise session.too_large()
        async for chunk in body:
            for start in range(0, len(chunk), FEED_BYTES):
                piece = chunk[start : start + FEED_BYTES]
                if session.received + len(piece) > limits.max_total_bytes:
                    raise session.too_large()
                await to_thread.run_sync(session.feed, piece)
        await to_thread.run_sync(session.finish)
    except AppError as exc:
        outcome, reason = ("partial" if session.results else "refused"), exc.title
        raise
    except BaseException:
        outcome, reason = "interrupted", "the upload was interrupted"
        raise
    finally:
        with CancelScope(shield=True):
            await to_thread.run_sync(session.close)
            report = session.report()
            await to_thread.run_sync(_audit, ingestor, actor, report, outcome, reason)
    return report


def _audit(
    ingestor: Ingestor, actor: Actor, report: UploadReport, outcome: str, reason: str | None
) -> None:
    service.record_upload(ingestor.pool.get(), actor, report, outcome=outcome, reason=reason)
