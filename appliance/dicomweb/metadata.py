"""WADO-RS metadata (PS3.18 10.4.1.1.2) of studies and series from a per-series cache.

A viewer asks for a series' metadata before its first frame, and asks again each time the
study is opened. Building it means reading every file's header and encoding it as DICOM JSON
(PS3.18 F.2), about 3 ms an instance here; so the encoded DICOM JSON of each series is kept,
as UTF-8 bytes per instance, in a :class:`MetadataCache` bounded in bytes (least recently used
series dropped first).

An entry is valid for one *version* of its series: the (SOP Instance UID, storage key, transfer
syntax) of every instance the index holds, in order. The index is read on every request (one
query), so an instance that arrives, is deleted, or is replaced (a replacement gets a new
storage key) changes the version and the next request answers the new version, reading only
the instances the cached one did not hold. Evicting a file to
the bucket leaves its bytes, so its key and the metadata, unchanged: a cached series of an
evicted study answers without fetching its files back (its frames are fetched on demand).

Bulk data URIs are stored relative to the DICOMweb root and made absolute with the base URL
of each request (the root as that client reached it). The prefix is inserted after every
``"BulkDataURI":"`` of the encoded text: that sequence can only be a key written by this
module, since a quote inside a string value is always escaped (RFC 8259 7).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sqlite_utils
from pydicom.dataset import Dataset

from appliance.dicom import query as q
from appliance.dicom import retrieval
from appliance.dicomweb import dicomjson
from appliance.dicomweb.models import Located
from appliance.errors import NotFound

_MARKER = b'"BulkDataURI":"'
#: One instance of a series version: SOP Instance UID, storage key, transfer syntax.
Version = tuple[tuple[str, str, str], ...]


def _encode(item: object) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


class MetadataCache:
    """Encoded metadata of series, each for one version (one encoded instance per entry of
    the version), at most ``max_bytes`` in all. Thread-safe; a series larger than the whole
    budget is never kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Version, tuple[bytes, ...]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, series_uid: str, version: Version) -> bytes | None:
        """The series' encoded instances, comma-separated, if cached for exactly
        ``version``."""
        with self._lock:
            entry = self._entries.get(series_uid)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(series_uid)
            return b",".join(entry[1])

    def known(self, series_uid: str) -> dict[tuple[str, str, str], bytes]:
        """The encoded instances of the series' cached version, whatever it is: those still
        in the new version need not be read again."""
        with self._lock:
            entry = self._entries.get(series_uid)
            return dict(zip(entry[0], entry[1], strict=True)) if entry else {}

    def put(self, series_uid: str, version: Version, parts: Sequence[bytes]) -> None:
        """Keep ``parts`` (one encoded instance per entry of ``version``) for the series."""
        size = sum(len(p) for p in parts)
        with self._lock:
            self._drop(series_uid)
            if size > self.max_bytes:
                return
            while self._entries and self._bytes + size > self.max_bytes:
                self._drop(next(iter(self._entries)))
            self._entries[series_uid] = (version, tuple(parts))
            self._bytes += size

    def discard(self, series_uids: Iterable[str]) -> None:
        """Forget these series (a deleted study's, so no patient data lingers in memory)."""
        with self._lock:
            for uid in series_uids:
                self._drop(uid)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._bytes

    def __contains__(self, series_uid: object) -> bool:
        return series_uid in self._entries

    def _drop(self, series_uid: str) -> None:
        entry = self._entries.pop(series_uid, None)
        if entry is not None:
            self._bytes -= sum(len(p) for p in entry[1])


@dataclass(frozen=True)
class SeriesRows:
    """The index's instances of one series, in order, and its version."""

    study_uid: str
    series_uid: str
    instances: list[retrieval.StoredInstance]

    @property
    def version(self) -> Version:
        return tuple(
            (i.sop_instance_uid, i.storage_key, i.transfer_syntax_uid) for i in self.instances
        )


def indexed(db: sqlite_utils.Database, study: str, series: str | None = None) -> list[SeriesRows]:
    """The series of a study (or the one series) as the index holds them now; NotFound when
    there is none."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = study
    if series:
        identifier.SeriesInstanceUID = series
    found = retrieval.instances(db, q.parse_identifier(identifier))
    if not found:
        raise NotFound(f"no such {'series' if series else 'study'} on this appliance")
    grouped: dict[str, SeriesRows] = {}
    for item in found:
        rows = grouped.get(item.series_uid)
        if rows is None:
            rows = grouped[item.series_uid] = SeriesRows(item.study_uid, item.series_uid, [])
        rows.instances.append(item)
    return list(grouped.values())


def encode_instance(loc: Located, read: Callable[[Located], Dataset]) -> bytes:
    """One instance as a DICOM JSON object, Bulk Data URIs relative to the DICOMweb root;
    ``read`` gives its header (without its pixels)."""
    url = dicomjson.instance_url("", loc.study_uid, loc.series_uid, loc.sop_instance_uid)
    return _encode(dicomjson.metadata(read(loc), url.lstrip("/"), loc.transfer_syntax_uid))


def document(bodies: Sequence[bytes], base: str) -> bytes:
    """The metadata response: a JSON array of every series' instances, Bulk Data URIs made
    absolute under ``base``."""
    prefix = _MARKER + _encode(base + "/")[1:-1]
    return b"[" + b",".join(b for b in bodies if b).replace(_MARKER, prefix) + b"]"
