"""DICOMweb reads over the index and the object store (PS3.18 10.4, 10.6, 9).

Every read of patient data is audited: one ``dicomweb.query`` row per QIDO-RS request (level and
how many matched, never the matching values), and one ``dicomweb.series.view`` row per user and
series viewed within :class:`SeriesViews`' window, whatever the number of instances, frames or
images fetched from it (a viewer fetching 500 frames is one event, as a human opened one series).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pydicom
import pydicom.uid
import sqlite_utils
from pydicom.dataset import Dataset

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.dicom import query as q
from appliance.dicom import retrieval
from appliance.dicomweb import dicomjson, frames, multipart, qido
from appliance.dicomweb import metadata as md
from appliance.dicomweb.models import (
    DICOM,
    EXPLICIT_LE,
    FRAME_MEDIA_TYPES,
    NATIVE,
    OCTET_STREAM,
    Located,
    Part,
)
from appliance.errors import AppError, BadRequest, Conflict, NotAcceptable, NotFound
from appliance.storage.instances import instance_path
from appliance.storage.service import ObjectStore
from appliance.studies import service as studies

AS_STORED = "*"


class SeriesViews:
    """Remembers which user viewed which series when, so a view is audited once per window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first(self, user_id: str, series_uid: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.window_s}
            last = self._seen.get((user_id, series_uid))
            if last is not None and now - last < self.window_s:
                return False
            self._seen[(user_id, series_uid)] = now
            return True


_STUDY_UID, _SERIES_UID, _SOP_UID = 0x0020000D, 0x0020000E, 0x00080018


def search(
    db: sqlite_utils.Database,
    actor: Actor,
    level: q.Level,
    items: Iterable[tuple[str, str]],
    scope: dict[str, str],
    base: str,
    retrieve_ae: str,
) -> tuple[list[dict[str, Any]], list[str]]:
    """QIDO-RS: the matches as DICOM JSON, and the parameters that were ignored."""
    try:
        parsed = qido.parse(level, items, scope)
    except qido.BadQuery as exc:
        raise BadRequest(str(exc)) from None
    try:
        found = list(
            q.matches(
                db, parsed.query, retrieve_ae=retrieve_ae, limit=parsed.limit, offset=parsed.offset
            )
        )
    except q.QueryError as exc:
        raise BadRequest(exc.comment) from None
    results = []
    for match in found:
        study = str(match.get(_STUDY_UID) or "")
        series = str(match.get(_SERIES_UID) or "") if level >= q.Level.SERIES else None
        sop = str(match.get(_SOP_UID) or "") if level >= q.Level.IMAGE else None
        url = dicomjson.instance_url(base, study, series, sop)
        results.append(dicomjson.match_json(match, url))
    audit.record_read(
        db,
        actor,
        "dicomweb.query",
        object_type=level.name.lower(),
        detail={"level": level.name, "returned": len(results), "offset": parsed.offset},
    )
    return results, parsed.ignored


def locate(
    db: sqlite_utils.Database,
    store: ObjectStore,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> list[Located]:
    """The stored instances a WADO-RS path names, in series and instance order."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = study
    if series:
        identifier.SeriesInstanceUID = series
    if sop:
        identifier.SOPInstanceUID = sop
    found = retrieval.instances(db, q.parse_identifier(identifier))
    if not found:
        what = "instance" if sop else "series" if series else "study"
        raise NotFound(f"no such {what} on this appliance")
    return [_file(db, store, item) for item in found]


def _file(db: sqlite_utils.Database, store: ObjectStore, item: retrieval.StoredInstance) -> Located:
    path = instance_path(db, store, item.storage_key)  # an evicted file is fetched back
    if not path.is_file():
        raise Conflict("a file of this resource is not kept on this appliance; run `radiant fsck`")
    return Located(
        item.study_uid,
        item.series_uid,
        item.sop_instance_uid,
        item.sop_class_uid,
        item.transfer_syntax_uid or EXPLICIT_LE,
        path,
    )


def metadata_document(
    db: sqlite_utils.Database,
    store: ObjectStore,
    cache: md.MetadataCache,
    study: str,
    series: str | None,
    base: str,
) -> tuple[bytes, list[str]]:
    """WADO-RS metadata of a study or series as encoded DICOM JSON, each series from the
    cache when its version is there, else read from its files and cached; and the series
    UIDs it covers (for the view audit)."""
    bodies = []
    groups = md.indexed(db, study, series)
    for rows in groups:
        body = cache.get(rows.series_uid, rows.version)
        if body is None:
            parts = _encode_series(db, store, cache, rows)
            cache.put(rows.series_uid, rows.version, parts)
            body = b",".join(parts)
        bodies.append(body)
    return md.document(bodies, base), [rows.series_uid for rows in groups]


def _encode_series(
    db: sqlite_utils.Database, store: ObjectStore, cache: md.MetadataCache, rows: md.SeriesRows
) -> list[bytes]:
    """The series' instances encoded, those of the cached version reused, the others read
    from their files."""
    known = cache.known(rows.series_uid)
    return [
        known.get(entry) or md.encode_instance(_file(db, store, item), _header)
        for entry, item in zip(rows.version, rows.instances, strict=True)
    ]


def audit_view(
    db: sqlite_utils.Database,
    actor: Actor,
    views: SeriesViews,
    located: Iterable[Located | str],
    what: str,
) -> None:
    """One ``dicomweb.series.view`` row per series (located instances, or series UIDs) not
    viewed by this user within the window."""
    uids = (loc if isinstance(loc, str) else loc.series_uid for loc in located)
    fresh = [uid for uid in dict.fromkeys(uids) if views.first(actor.user_id or actor.name, uid)]
    ids = studies.series_by_uid(db, fresh)
    for uid in fresh:
        series_id, study_id = ids.get(uid, (None, None))
        audit.record_read(
            db,
            actor,
            "dicomweb.series.view",
            object_type="series",
            object_id=series_id,
            detail={"study_id": study_id, "resource": what},
        )


def choose_syntax(accept: str | None) -> str:
    """The transfer syntax asked for ``application/dicom`` parts: :data:`AS_STORED` (no
    ``transfer-syntax`` parameter, or ``*``) or a UID. NotAcceptable when nothing fits."""
    for media in multipart.parse_accept(accept):
        if media.media_type == "multipart/related":
            if media.params.get("type", DICOM).lower() not in (DICOM, "application/*", "*/*"):
                continue
        elif media.media_type not in (DICOM, "application/*", "*/*"):
            continue
        syntax = media.params.get("transfer-syntax", "").strip()
        return syntax if syntax and syntax != "*" else AS_STORED
    raise NotAcceptable('instances are served as multipart/related; type="application/dicom"')


def _explicit_le(loc: Located) -> bytes:
    ds = read_dataset(loc)
    if ds.file_meta.TransferSyntaxUID not in NATIVE:
        try:
            ds.decompress()
        except Exception as exc:
            raise NotAcceptable(
                "an instance cannot be decoded to Explicit VR Little Endian"
                f" ({exc.__class__.__name__})"
            ) from None
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(EXPLICIT_LE)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def instance_parts(located: list[Located], syntax: str, base: str) -> Iterator[Part]:
    """The Part 10 files, byte for byte as stored unless another syntax was asked for."""
    for loc in located:
        if syntax in (AS_STORED, loc.transfer_syntax_uid):
            data = loc.path.read_bytes()
            ts = str(loc.transfer_syntax_uid)
        else:
            data = _explicit_le(loc)
            ts = EXPLICIT_LE
        url = dicomjson.instance_url(base, loc.study_uid, loc.series_uid, loc.sop_instance_uid)
        yield Part(f"{DICOM}; transfer-syntax={ts}", data, url)


def check_syntax(located: list[Located], syntax: str) -> None:
    if syntax not in (AS_STORED, EXPLICIT_LE) and any(
        loc.transfer_syntax_uid != syntax for loc in located
    ):
        raise NotAcceptable(
            f"instances are served as stored or in {EXPLICIT_LE}, not in {syntax[:64]}"
        )


def metadata(located: list[Located], base: str) -> list[dict[str, Any]]:
    out = []
    for loc in located:
        ds = read_dataset(loc, pixels=False)
        url = dicomjson.instance_url(base, loc.study_uid, loc.series_uid, loc.sop_instance_uid)
        out.append(dicomjson.metadata(ds, url, loc.transfer_syntax_uid))
    return out


def parse_frame_list(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",")]
    except ValueError:
        raise BadRequest("frames are a comma-separated list of numbers from 1") from None
    if not numbers or len(numbers) > 10_000 or any(n < 1 for n in numbers):
        raise BadRequest("frames are a comma-separated list of numbers from 1")
    return numbers


def choose_frames(accept: str | None, stored: str) -> tuple[bool, str]:
    """(as stored?, part media type) for a frames request (PS3.18 8.7.3.5)."""
    compressed_type = FRAME_MEDIA_TYPES.get(stored)
    for media in multipart.parse_accept(accept):
        kind = media.media_type
        if kind == "multipart/related":
            kind = media.params.get("type", OCTET_STREAM).lower()
        syntax = media.params.get("transfer-syntax", "").strip()
        if kind in (OCTET_STREAM, "application/*", "*/*"):
            if syntax == "*":
                return True, compressed_type or OCTET_STREAM
            if syntax in ("", EXPLICIT_LE) or (syntax == stored and stored in NATIVE):
                return syntax == stored and stored != EXPLICIT_LE, OCTET_STREAM
        if compressed_type and kind in (compressed_type, "image/*") and syntax in ("", "*", stored):
            return True, compressed_type
    raise NotAcceptable(
        f"frames are served in {EXPLICIT_LE} (application/octet-stream) or as stored ({stored})"
    )


def frame_parts(loc: Located, numbers: list[int], accept: str | None, base: str) -> list[Part]:
    as_stored, part_type = choose_frames(accept, loc.transfer_syntax_uid)
    ds = read_dataset(loc)
    try:
        if as_stored:
            data = frames.stored(ds, loc.transfer_syntax_uid, numbers)
            ts = loc.transfer_syntax_uid
        else:
            data = frames.little_endian(ds, loc.path, loc.transfer_syntax_uid, numbers)
            ts = EXPLICIT_LE
    except frames.FrameError as exc:
        raise _http(exc) from None
    url = dicomjson.instance_url(base, loc.study_uid, loc.series_uid, loc.sop_instance_uid)
    return [
        Part(f"{part_type}; transfer-syntax={ts}", frame, f"{url}/frames/{n}")
        for n, frame in zip(numbers, data, strict=True)
    ]


def bulk_parts(loc: Located, tag: int) -> list[Part]:
    """The value of one bulk data element (Pixel Data: its frames as stored)."""
    ds = read_dataset(loc)
    if tag in dicomjson.PIXEL_TAGS:
        if tag != 0x7FE00010 or "PixelData" not in ds:
            raise NotFound("no such bulk data in this instance")
        every = list(range(1, frames.frame_count(ds) + 1))
        as_stored = frames.stored(ds, loc.transfer_syntax_uid, every)
        media = FRAME_MEDIA_TYPES.get(loc.transfer_syntax_uid, OCTET_STREAM)
        return [Part(f"{media}; transfer-syntax={loc.transfer_syntax_uid}", f) for f in as_stored]
    elem = dicomjson.find_element(ds, tag)
    if elem is None or not isinstance(elem.value, bytes | bytearray):
        raise NotFound("no such bulk data in this instance")
    return [Part(OCTET_STREAM, bytes(elem.value))]


def _http(exc: frames.FrameError) -> AppError:
    error = {404: NotFound, 406: NotAcceptable, 409: Conflict}.get(exc.status, BadRequest)
    return error(exc.detail)


def render(
    loc: Located,
    frame: int,
    media_type: str,
    *,
    window: Any,
    viewport: tuple[int, int] | None,
    quality: int,
) -> bytes:
    try:
        return frames.render(
            loc.path, frame, media_type, window=window, viewport=viewport, quality=quality
        )
    except frames.FrameError as exc:
        raise _http(exc) from None


def middle(located: list[Located]) -> Located:
    """The representative instance of a series or study (thumbnails): the middle one of the
    first series holding an image."""
    first = located[0].series_uid
    same = [loc for loc in located if loc.series_uid == first]
    return same[len(same) // 2]


def read_dataset(loc: Located, *, pixels: bool = True) -> pydicom.Dataset:
    try:
        return frames.read(loc.path, pixels=pixels)
    except frames.FrameError as exc:
        raise _http(exc) from None


def warm_metadata(
    db: sqlite_utils.Database, store: ObjectStore, cache: md.MetadataCache, series_id: str
) -> bool:
    """Build a series' metadata into the cache (when it became stable), so that the first
    viewer to open it does not wait for its headers to be read. True when it was built."""
    uids = studies.series_uids(db, series_id)
    if uids is None or cache.max_bytes == 0:
        return False
    study_uid, series_uid = uids
    try:
        (rows,) = md.indexed(db, study_uid, series_uid)
    except NotFound:
        return False
    if cache.get(series_uid, rows.version) is not None:
        return False
    cache.put(series_uid, rows.version, _encode_series(db, store, cache, rows))
    return True


def _header(loc: Located) -> Dataset:
    return read_dataset(loc, pixels=False)
