"""Quarantine quotas and repeats (issue 16, item 5) over real DICOM associations (pynetdicom
as the sending peer, both receiver front ends): the same bad file sent again is kept once with
a counter; beyond the count or size quota the files seen longest ago are evicted, audited."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from appliance.audit import service as audit_service
from appliance.context import AppContext
from appliance.dicom.receiver import Receiver
from tests import hostile
from tests.unit import test_receiver as receiver_tests
from tests.unit.test_receiver_hostile import _send_files

frontend = receiver_tests.frontend
make_receiver = receiver_tests.make_receiver

PEERS = "TESTSCU@127.0.0.1:9"


def _bad_files(tmp_path: Path, *depths: int) -> list[Path]:
    """Distinct refused files: the real base instance ending in sequences nested ``depth``
    deep (beyond the parser's limit, so each is quarantined), one file per depth."""
    paths = []
    for depth in depths:
        path = tmp_path / f"nested_{depth}.dcm"
        path.write_bytes(hostile.nested_sequences(depth))
        paths.append(path)
    return paths


def _rows(db: sqlite_utils.Database) -> list[tuple[str, int, str, str, str]]:
    return [
        (str(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]))
        for r in db.execute(
            "SELECT sha256, seen_count, received_at, last_seen_at, storage_path FROM quarantine"
            " ORDER BY received_at"
        )
    ]


def _quarantined_files(ctx: AppContext) -> list[Path]:
    return sorted(ctx.quarantine.root.rglob("*.dcm"))


def _data_set(data: bytes) -> bytes:
    """The data set after the File Meta (the receiver writes a File Meta of its own)."""
    return data[hostile._meta_end(data) :]


def _kept_data_sets(ctx: AppContext) -> set[bytes]:
    return {_data_set(p.read_bytes()) for p in _quarantined_files(ctx)}


def test_the_same_bad_file_sent_twice_is_kept_once_with_a_counter(
    make_receiver: Callable[..., tuple[Receiver, AppContext]], tmp_path: Path
) -> None:
    receiver, ctx = make_receiver(dicom_peers=PEERS)
    (bad,) = _bad_files(tmp_path, 1000)
    answers = _send_files(receiver, [bad, bad, bad])
    assert all(0xC000 <= status <= 0xCFFF for status, _ in answers), answers
    db = ctx.pool.get()
    rows = _rows(db)
    assert len(rows) == 1
    sha256, seen, received, last_seen, _ = rows[0]
    assert seen == 3 and last_seen > received
    (kept,) = _quarantined_files(ctx)
    assert sha256 == hashlib.sha256(kept.read_bytes()).hexdigest()
    assert _data_set(kept.read_bytes()) == _data_set(bad.read_bytes())
    repeats = [
        r[0]
        for r in db.execute(
            "SELECT detail FROM audit_log WHERE action = 'dicom.quarantine' ORDER BY id"
        )
    ]
    assert len(repeats) == 3 and json.loads(repeats[2])["repeat"] is True
    assert audit_service.verify(db).ok


def test_beyond_the_count_quota_the_oldest_are_evicted_and_audited(
    make_receiver: Callable[..., tuple[Receiver, AppContext]], tmp_path: Path
) -> None:
    receiver, ctx = make_receiver(dicom_peers=PEERS, quarantine_max_files=2)
    files = _bad_files(tmp_path, 100, 200, 300, 400)
    answers = _send_files(receiver, files)
    assert all(0xC000 <= status <= 0xCFFF for status, _ in answers), answers
    db = ctx.pool.get()
    assert len(_rows(db)) == 2
    # the two oldest went
    assert _kept_data_sets(ctx) == {_data_set(f.read_bytes()) for f in files[2:]}
    kept = {r[0] for r in _rows(db)}
    evictions = db.execute(
        "SELECT object_id, detail FROM audit_log WHERE action = 'dicom.quarantine.evict'"
    ).fetchall()
    assert len(evictions) == 2
    assert all(json.loads(detail)["reason"] == "quota" for _, detail in evictions)
    assert not any(sha in detail for _, detail in evictions for sha in kept)
    assert audit_service.verify(db).ok


def test_beyond_the_size_quota_the_files_seen_longest_ago_are_evicted(
    make_receiver: Callable[..., tuple[Receiver, AppContext]], tmp_path: Path
) -> None:
    receiver, ctx = make_receiver(dicom_peers=PEERS, quarantine_max_mb=1)
    # about 400 KB each: three exceed 1 MiB
    first, second, third = _bad_files(tmp_path, 11_000, 11_001, 11_002)
    _send_files(receiver, [first, second])
    _send_files(receiver, [first])  # seen again: now the most recent
    _send_files(receiver, [third])
    db = ctx.pool.get()
    assert _kept_data_sets(ctx) == {_data_set(p.read_bytes()) for p in (first, third)}
    total = sum(p.stat().st_size for p in _quarantined_files(ctx))
    assert total <= 1 << 20 and len(_quarantined_files(ctx)) == 2
    assert (
        db.execute(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'dicom.quarantine.evict'"
        ).fetchone()[0]
        == 1
    )
