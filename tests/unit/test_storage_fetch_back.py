"""The storage layer's own side of eviction (:mod:`appliance.storage.instances`), on a real
SQLite index and real files: evict switches the row before removing the file, and a reader of
an evicted file gets it back only through the injected fetch-back, checked against the index.

The fetch-back here copies from a folder that stands for the bucket (the contract is "write
the object to this path"); the real rclone one is exercised in
``tests/integration/test_storage_eviction.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.storage.instances import Evictable, evict, instance_path
from appliance.storage.models import FileUnavailable, NotKeptHere
from sync import fetch
from tests.dicom_files import instance_files

ACTOR = Actor.system("test")


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    context = prepare(Settings(data_dir=tmp_path / "data"))
    yield context
    context.pool.close_all()


def _stored(ctx: AppContext, bucket: Path) -> Evictable:
    """One instance ingested, its file copied to ``bucket`` (as a sync round would)."""
    data = instance_files("mr_siemens_t1_sag_brain_35sl")[0].read_bytes()
    result = ctx.ingestor.ingest(data, source="test", actor=ACTOR)
    assert result.instance_id is not None
    row = ctx.pool.get().execute(
        "SELECT storage_key, sha256, size FROM instances WHERE id = ?", (result.instance_id,)
    ).fetchone()
    item = Evictable(result.instance_id, str(row[0]), str(row[1]), int(row[2]))
    (bucket / item.storage_key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.store.path(item.storage_key), bucket / item.storage_key)
    return item


def _state(ctx: AppContext, instance_id: str) -> str:
    row = ctx.pool.get().execute(
        "SELECT storage_state FROM instances WHERE id = ?", (instance_id,)
    ).fetchone()
    return str(row[0])


def _leftovers(path: Path) -> list[str]:
    return [p.name for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_an_evicted_file_comes_back_only_whole_and_matching(
    ctx: AppContext, tmp_path: Path
) -> None:
    bucket = tmp_path / "bucket"
    item = _stored(ctx, bucket)
    db = ctx.pool.get()
    assert evict(db, ctx.store, "study", [item], ACTOR) == [item]
    path = ctx.store.path(item.storage_key)
    assert _state(ctx, item.instance_id) == "remote" and not path.exists()
    assert evict(db, ctx.store, "study", [item], ACTOR) == []  # already remote: nothing

    # the sync layer's fetch-back without RADIANT_SYNC_REMOTE, then none at all: a 409 that
    # says why, nothing changes
    fetch.attach(ctx.store, ctx.settings, ctx.pool)
    with pytest.raises(NotKeptHere, match="no bucket is configured") as refused:
        instance_path(db, ctx.store, item.storage_key)
    assert refused.value.status == 409
    ctx.store.fetch_back = None
    with pytest.raises(NotKeptHere, match="no connection to the bucket"):
        instance_path(db, ctx.store, item.storage_key)
    assert _state(ctx, item.instance_id) == "remote" and not path.exists()

    # the bucket's copy differs from the index: refused (503), nothing half-written stays
    def wrong(key: str, dest: Path) -> None:
        data = (bucket / key).read_bytes()
        dest.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one bit pattern flipped

    ctx.store.fetch_back = wrong
    with pytest.raises(FileUnavailable, match="does not match") as mismatch:
        instance_path(db, ctx.store, item.storage_key)
    assert mismatch.value.status == 503
    assert not path.exists() and _leftovers(path) == []
    assert _state(ctx, item.instance_id) == "remote"

    # a fetch-back that fails midway: its error passes through, its partial file is removed
    def unreachable(key: str, dest: Path) -> None:
        dest.write_bytes(b"partial")
        raise FileUnavailable("the bucket could not be reached")

    ctx.store.fetch_back = unreachable
    with pytest.raises(FileUnavailable, match="could not be reached"):
        instance_path(db, ctx.store, item.storage_key)
    assert not path.exists() and _leftovers(path) == []

    # the right bytes: stored (0600), the row local again, the fetch audited
    calls: list[str] = []

    def right(key: str, dest: Path) -> None:
        calls.append(key)
        shutil.copyfile(bucket / key, dest)

    ctx.store.fetch_back = right
    assert instance_path(db, ctx.store, item.storage_key) == path
    assert ctx.store.hash_of(item.storage_key).sha256 == item.sha256
    assert path.stat().st_mode & 0o777 == 0o600
    assert _state(ctx, item.instance_id) == "local"
    assert instance_path(db, ctx.store, item.storage_key) == path  # local now: no second fetch
    assert calls == [item.storage_key]
    actions = [
        str(r[0])
        for r in db.execute(
            "SELECT action FROM audit_log WHERE action LIKE 'sync.%' ORDER BY id"
        )
    ]
    assert actions == ["sync.evict", "sync.fetch"]


def test_a_missing_local_file_is_not_fetched_and_a_replaced_file_is_not_evicted(
    ctx: AppContext, tmp_path: Path
) -> None:
    item = _stored(ctx, tmp_path / "bucket")
    db = ctx.pool.get()
    stale = Evictable(item.instance_id, item.storage_key, "0" * 64, item.size)
    assert evict(db, ctx.store, "study", [stale], ACTOR) == []  # the hash the bucket holds
    assert _state(ctx, item.instance_id) == "local"  # is not the row's: kept
    path = ctx.store.path(item.storage_key)
    path.unlink()  # lost behind the index's back: fsck's business, not the bucket's

    def never(key: str, dest: Path) -> None:
        raise AssertionError("a local row must not be fetched back")

    ctx.store.fetch_back = never
    assert instance_path(db, ctx.store, item.storage_key) == path
    assert not path.exists()
