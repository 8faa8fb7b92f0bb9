"""WADO-RS metadata from the per-series cache (appliance.dicomweb.metadata), on a real SQLite
index, the real ingest path and real files: the cached document equals the one built from the
files; an instance that arrives, is replaced or leaves the index changes the next answer; an
evicted series answers from the cache without its files; the byte budget holds."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.dicomweb import service
from appliance.dicomweb.metadata import MetadataCache
from appliance.errors import NotFound
from appliance.storage.instances import Evictable, evict
from tests.dicom_files import instance_files

ACTOR = Actor.system("test")
BASE = "http://box.example:8443/dicom-web"
FILES = instance_files("mr_siemens_t1_sag_brain_35sl")[:4]


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    context = prepare(Settings(data_dir=tmp_path / "data"))
    yield context
    context.pool.close_all()


def _uids(data: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _variant(path: Path, **changes: Any) -> bytes:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _ingest(ctx: AppContext, data: bytes) -> str:
    result = ctx.ingestor.ingest(data, source="test", actor=ACTOR)
    assert result.instance_id is not None
    return result.instance_id


def _document(
    ctx: AppContext, cache: MetadataCache, study: str, series: str | None = None
) -> list[dict[str, Any]]:
    body, _ = service.metadata_document(ctx.pool.get(), ctx.store, cache, study, series, BASE)
    document = json.loads(body)
    assert isinstance(document, list)
    return document


def _sops(document: list[dict[str, Any]]) -> list[str]:
    return [item["00080018"]["Value"][0] for item in document]


def test_the_cached_document_is_the_one_built_from_the_files(ctx: AppContext) -> None:
    for path in FILES[:2]:
        _ingest(ctx, path.read_bytes())
    study, series, _ = _uids(FILES[0].read_bytes())
    cache = MetadataCache(10_000_000)
    built = service.metadata(service.locate(ctx.pool.get(), ctx.store, study, series), BASE)
    first = _document(ctx, cache, study, series)
    assert series in cache and cache.size > 0
    assert first == built == _document(ctx, cache, study, series)  # miss, then hit
    assert first[0]["7FE00010"]["BulkDataURI"].startswith(f"{BASE}/studies/{study}/series/")
    assert _document(ctx, cache, study) == built  # study level: the same series


def test_a_new_instance_appears_in_the_next_answer(ctx: AppContext) -> None:
    _ingest(ctx, FILES[0].read_bytes())
    study, series, first_sop = _uids(FILES[0].read_bytes())
    cache = MetadataCache(10_000_000)
    assert _sops(_document(ctx, cache, study, series)) == [first_sop]
    _ingest(ctx, FILES[1].read_bytes())
    assert sorted(_sops(_document(ctx, cache, study, series))) == sorted(
        [first_sop, _uids(FILES[1].read_bytes())[2]]
    )
    # a new series of the study: the study's answer has it, the cached series is reused
    other = _variant(FILES[2], SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid())
    _ingest(ctx, other)
    assert len(_document(ctx, cache, study)) == 3


def test_a_new_instance_is_the_only_file_read(ctx: AppContext) -> None:
    """The series' cached instances are reused: the first one's file may even be evicted
    (no bucket here, so it could not be fetched back) when the second arrives."""
    instance_id = _ingest(ctx, FILES[0].read_bytes())
    study, series, first_sop = _uids(FILES[0].read_bytes())
    cache = MetadataCache(10_000_000)
    _document(ctx, cache, study, series)
    db = ctx.pool.get()
    key, sha256, size, study_id = db.execute(
        "SELECT i.storage_key, i.sha256, i.size, se.study_id FROM instances i"
        " JOIN series se ON se.id = i.series_id WHERE i.id = ?",
        (instance_id,),
    ).fetchone()
    assert evict(db, ctx.store, study_id, [Evictable(instance_id, key, sha256, size)])
    _ingest(ctx, FILES[1].read_bytes())
    assert sorted(_sops(_document(ctx, cache, study, series))) == sorted(
        [first_sop, _uids(FILES[1].read_bytes())[2]]
    )


def test_a_replaced_instance_is_answered_as_replaced(tmp_path: Path) -> None:
    context = prepare(Settings(data_dir=tmp_path / "data", dicom_overwrite=True))
    try:
        _ingest(context, FILES[0].read_bytes())
        study, series, _ = _uids(FILES[0].read_bytes())
        cache = MetadataCache(10_000_000)
        assert _document(context, cache, study, series)[0]["0008103E"]["Value"] != ["Replaced"]
        _ingest(context, _variant(FILES[0], SeriesDescription="Replaced"))
        assert _document(context, cache, study, series)[0]["0008103E"]["Value"] == ["Replaced"]
    finally:
        context.pool.close_all()


def test_an_instance_gone_from_the_index_leaves_the_answer(ctx: AppContext) -> None:
    for path in FILES[:2]:
        _ingest(ctx, path.read_bytes())
    study, series, kept = _uids(FILES[0].read_bytes())
    cache = MetadataCache(10_000_000)
    assert len(_document(ctx, cache, study, series)) == 2
    db = ctx.pool.get()
    with db.conn:
        db.execute(
            "DELETE FROM instances WHERE sop_instance_uid = ?", (_uids(FILES[1].read_bytes())[2],)
        )
    assert _sops(_document(ctx, cache, study, series)) == [kept]
    with db.conn:
        db.execute("DELETE FROM instances")
    with pytest.raises(NotFound):
        _document(ctx, cache, study, series)


def test_an_evicted_series_answers_from_the_cache_without_its_files(ctx: AppContext) -> None:
    instance_id = _ingest(ctx, FILES[0].read_bytes())
    study, series, _ = _uids(FILES[0].read_bytes())
    cache = MetadataCache(10_000_000)
    before = _document(ctx, cache, study, series)
    db = ctx.pool.get()
    key, sha256, size, study_id = db.execute(
        "SELECT i.storage_key, i.sha256, i.size, se.study_id FROM instances i"
        " JOIN series se ON se.id = i.series_id WHERE i.id = ?",
        (instance_id,),
    ).fetchone()
    evicted = evict(db, ctx.store, study_id, [Evictable(instance_id, key, sha256, size)])
    assert evicted and not ctx.store.path(key).exists()
    assert _document(ctx, cache, study, series) == before  # same bytes, same metadata
    # not cached: the file is needed and no bucket can give it back (a 409 that says why)
    with pytest.raises(Exception, match="not kept"):
        _document(ctx, MetadataCache(10_000_000), study, series)


def test_a_bulk_data_key_inside_a_value_is_left_alone(ctx: AppContext) -> None:
    trick = 'x"BulkDataURI":"y'
    _ingest(ctx, _variant(FILES[0], StudyDescription=trick))
    study, series, _ = _uids(FILES[0].read_bytes())
    (item,) = _document(ctx, MetadataCache(10_000_000), study, series)
    assert item["00081030"]["Value"] == [trick]


def test_warming_builds_a_stable_series_once(ctx: AppContext) -> None:
    _ingest(ctx, FILES[0].read_bytes())
    series = _uids(FILES[0].read_bytes())[1]
    db = ctx.pool.get()
    series_id = db.execute("SELECT id FROM series WHERE series_uid = ?", (series,)).fetchone()[0]
    cache = MetadataCache(10_000_000)
    assert service.warm_metadata(db, ctx.store, cache, series_id) is True
    assert series in cache
    assert service.warm_metadata(db, ctx.store, cache, series_id) is False  # already there
    assert service.warm_metadata(db, ctx.store, cache, "no-such-series") is False
    assert service.warm_metadata(db, ctx.store, MetadataCache(0), series_id) is False


def test_the_cache_keeps_to_its_byte_budget() -> None:
    cache = MetadataCache(100)
    one: tuple[tuple[str, str, str], ...] = (("1.1", "k1", "1.2.840.10008.1.2.1"),)
    cache.put("a", one, [b"x" * 40])
    cache.put("b", one, [b"y" * 40])
    assert cache.get("a", one) == b"x" * 40  # a is now the most recently used
    cache.put("c", one, [b"z" * 40])  # over 100: b goes
    assert "b" not in cache and "a" in cache and "c" in cache and cache.size == 80
    cache.put("d", one, [b"w" * 60, b"v" * 41])  # larger than the whole budget: never kept
    assert "d" not in cache and cache.size == 80
    other = (("1.1", "k2", "1.2.840.10008.1.2.1"),)
    assert cache.get("a", other) is None  # another version: not an answer
    assert cache.known("a") == {one[0]: b"x" * 40}  # but its instances can be reused
    cache.discard(["a", "c"])
    assert cache.size == 0 and cache.known("a") == {}
    nothing = MetadataCache(0)
    nothing.put("a", one, [b"x"])
    assert nothing.size == 0


def test_the_cache_budget_has_a_default() -> None:
    assert Settings().dicomweb_metadata_cache_mb == 64


def test_the_serving_process_warms_a_series_that_becomes_stable(ctx: AppContext) -> None:
    from appliance.bootstrap import build_services
    from appliance.dicomweb.http import metadata_cache
    from appliance.studies.stability import Stable

    _ingest(ctx, FILES[0].read_bytes())
    series = _uids(FILES[0].read_bytes())[1]
    db = ctx.pool.get()
    series_id = db.execute("SELECT id FROM series WHERE series_uid = ?", (series,)).fetchone()[0]
    services = build_services(ctx)
    (warm,) = [
        listener
        for listener in services.stability.listeners
        if "warm_metadata_listener" in getattr(listener, "__qualname__", "")
    ]
    warm(Stable("study", "whatever"))  # only series are built
    assert series not in metadata_cache(ctx)
    warm(Stable("series", series_id))
    assert series in metadata_cache(ctx)
