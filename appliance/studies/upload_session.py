"""One multipart upload body received piece by piece: each file part written to a temp file
and, once complete, checked and ingested (zip archives expanded entry by entry) before the
next is read; the report of what was stored, refused or quarantined.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from appliance.audit.models import Actor
from appliance.dicom.ingest import Ingestor, IngestResult, Outcome
from appliance.dicom.limits import meta_uids
from appliance.dicom.reading import MEDIA_STORAGE_DIRECTORY
from appliance.errors import AppError, InvalidInput, PayloadTooLarge
from appliance.logs import get_logger
from appliance.studies import service
from appliance.studies.models import FileResult, UploadCounts, UploadReport

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks
from appliance.studies.upload_checks import (
    DICOMDIR,
    FIELD,
    NESTED_ZIP,
    NOT_DICOM,
    EntryRefused,
    UploadLimits,
    clean_name,
    entry_problem,
    mib,
    read_entry,
    sniff,
)

log = get_logger("radiant.upload")


class InsufficientStorage(AppError):
    """The disk is below its free-space watermark or full (507)."""

    status = 507
    title = "Insufficient storage"


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
            f"the upload is larger than the {mib(limit)} limit (RADIANT_UPLOAD_MAX_MB); "
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
                f"file is {mib(part.size)}, over the {mib(self.limits.max_instance_bytes)} "
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
                    f"the archive expands to {mib(declared)}, over the "
                    f"{mib(self.limits.max_archive_bytes)} limit for one archive (possible zip "
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
                        archive,
                        info,
                        self.limits,
                        self.limits.max_archive_bytes - expanded,
                        self.work_dir,
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
        if meta_uids(data)[0] == MEDIA_STORAGE_DIRECTORY:  # a DICOMDIR by another name (DIRFILE)
            self._reject(name, archive, DICOMDIR)
            return
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
        if result.outcome is Outcome.QUARANTINED:
            log.warning(
                "upload_file_quarantined",
                file=len(self.results) + 1,
                quarantine_id=result.quarantine_id,
                reason=result.reason,
            )
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
        # the file's ordinal, not its name (a name may carry PHI)
        log.warning("upload_file_rejected", file=len(self.results) + 1, reason=reason)
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
