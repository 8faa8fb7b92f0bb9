"""Web upload of DICOM files and zip archives: a streamed multipart body, ingested file by file.

The body is parsed as it arrives (never held in memory): each file part is written to a private
temp file under ``<data_dir>/uploads`` and, once complete, ingested through the one ingest path
(:meth:`appliance.dicom.ingest.Ingestor.ingest`, ``source="upload"``) before the next one is read.
So when the body goes over ``RADIANT_UPLOAD_MAX_MB`` (413), is malformed or is cut off, the files
received completely before that point are stored and acknowledged in the problem document, and
nothing else was stored: no file is ever half-ingested.

Zip archives are expanded entry by entry (each spooled to a private unnamed file, then held
once), never onto disk by their names. Refused, each with its reason and without stopping
the rest: entries with absolute paths or ``..`` segments,
symbolic links, encrypted entries, entries over :data:`MAX_INSTANCE_BYTES` or compressed more than
:data:`MAX_COMPRESSION_RATIO`:1 (zip bombs), nested archives (reported, not expanded), DICOMDIR
indexes and anything that is not DICOM. A whole archive is refused when it is damaged or
truncated, has more than :data:`MAX_ARCHIVE_ENTRIES` entries or would expand beyond
:data:`ARCHIVE_EXPANSION` times the upload limit. Directory entries are skipped.

"Not DICOM" (rejected, not kept) means no ``DICM`` marker at byte 128 (PS3.10 7.1) and no data
set starting in group 0002 or 0008; anything that looks like DICOM goes to the ingestor, which
quarantines malformed instances with their bytes and a reason.

This module receives the request; :mod:`~appliance.studies.upload_session` parses the body and
ingests each file, :mod:`~appliance.studies.upload_checks` holds the limits and entry checks.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from anyio import CancelScope, to_thread
from python_multipart.multipart import parse_options_header

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.dicom.ingest import Ingestor
from appliance.errors import AppError, InvalidInput, UnsupportedMediaType
from appliance.studies import service
from appliance.studies.models import UploadReport

if TYPE_CHECKING:
    pass
from appliance.studies.upload_checks import (
    FEED_BYTES,
    FIELD,
    MAX_COMPRESSION_RATIO,
    MIB,
    NESTED_ZIP,
    NOT_DICOM,
    UPLOADS_DIR,
    UploadLimits,
)
from appliance.studies.upload_session import InsufficientStorage, UploadSession

__all__ = [
    "FIELD",
    "MAX_COMPRESSION_RATIO",
    "MIB",
    "NESTED_ZIP",
    "NOT_DICOM",
    "InsufficientStorage",
    "UploadLimits",
    "UploadSession",
    "discard_partial_uploads",
    "receive",
    "uploads_dir",
]


def uploads_dir(settings: Settings) -> Path:
    """Where upload temp files live, under the data directory."""
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
