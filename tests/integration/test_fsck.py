"""``radiant fsck`` against a real store and SQLite index filled through the real ingest path."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.db.connection import open_database
from appliance.dicom.fsck import NOT_INDEXED
from appliance.dicom.recovery import UNINDEXED, recover
from appliance.dicom.store_index import IndexedFile, walk_index
from radiant.cli import main as radiant
from tests.servers import RADIANT, clean_env

pytestmark = pytest.mark.integration
MR = Path(__file__).resolve().parents[1] / "data" / "mr_siemens_t1_sag_brain_35sl"
ACTOR = Actor.system("test")
ORPHAN_KEY = "dicom/1.2.3/1.2.3.4/1.2.3.4.5.dcm"
OLD = time.time() - 3600  # an hour ago: past fsck's grace period for in-flight writes


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    context = prepare(settings)
    for source in sorted(MR.glob("*.dcm"))[:3]:
        assert context.ingestor.ingest(source.read_bytes(), source="test", actor=ACTOR).outcome
    yield context
    context.pool.close_all()


def fsck(
    settings: Settings, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = radiant(["fsck", "--data-dir", str(settings.data_dir), *extra])
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).strip().splitlines()


def instances(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in db.execute("SELECT id, storage_key FROM instances")]


def age(path: Path) -> None:
    os.utime(path, (OLD, OLD))


def test_clean_store_is_consistent_exit_0(ctx: AppContext, settings: Settings) -> None:
    result = subprocess.run(
        [*RADIANT, "fsck", "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines() == [
        "checked 3 instances, 3 stored files, 0 quarantined files, 3 audit rows: consistent"
    ]
    assert result.stderr == ""


def test_edited_file_is_a_hash_mismatch_naming_the_instance(
    ctx: AppContext, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    instance_id, key = instances(ctx.pool.get())[1]
    path = ctx.store.path(key)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, one pixel byte changed
    path.write_bytes(bytes(data))

    code, lines = fsck(settings, capsys)

    assert code == 1
    assert lines[0] == (
        f"hash mismatch: instance {instance_id} ({key}): SHA-256 on disk differs from the index"
    )
    assert lines[-1].endswith(": 1 problems")

    # Repair never deletes an indexed row or "fixes" the file: it says to restore it.
    code, lines = fsck(settings, capsys, "--repair")
    assert code == 1
    assert lines[0].endswith("[restore this instance from the replica]")
    assert (instance_id, key) in instances(ctx.pool.get())
    assert path.read_bytes() == bytes(data)


def test_truncated_file_is_a_size_mismatch(
    ctx: AppContext, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    instance_id, key = instances(ctx.pool.get())[0]
    path = ctx.store.path(key)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:100])

    code, lines = fsck(settings, capsys)

    assert code == 1
    assert (
        lines[0]
        == f"size mismatch: instance {instance_id} ({key}): 100 bytes on disk, {size} indexed"
    )


def test_deleted_file_is_missing(
    ctx: AppContext, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    instance_id, key = instances(ctx.pool.get())[2]
    ctx.store.delete(key)

    code, lines = fsck(settings, capsys)

    assert code == 1
    assert lines[0] == f"missing file: instance {instance_id} ({key})"
    code, lines = fsck(settings, capsys, "--repair")
    assert code == 1 and (instance_id, key) in instances(ctx.pool.get())


def test_orphan_file_is_reported_then_quarantined_by_repair(
    ctx: AppContext, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    orphan = (MR / sorted(p.name for p in MR.glob("*.dcm"))[10]).read_bytes()
    ctx.store.put(ORPHAN_KEY, orphan)

    code, lines = fsck(settings, capsys)
    assert code == 1
    assert lines[0] == f"not indexed: {ORPHAN_KEY} (no instance row names it)"

    # Just written: it may be an ingest whose index row is about to be committed.
    code, lines = fsck(settings, capsys, "--repair")
    assert code == 1
    assert "may be an ingest in progress: not repaired" in lines[0]
    assert ctx.store.exists(ORPHAN_KEY)

    age(ctx.store.path(ORPHAN_KEY))
    code, lines = fsck(settings, capsys, "--repair")
    assert code == 0, lines
    assert lines[0].startswith(f"not indexed: {ORPHAN_KEY} (no instance row names it) [repaired:")
    assert lines[-1].endswith("1 problems, 1 repaired, 0 left")
    assert not ctx.store.exists(ORPHAN_KEY)
    db = open_database(settings.db_path)
    row = db.execute("SELECT reason, source, storage_path, size FROM quarantine").fetchone()
    assert row[:2] == (NOT_INDEXED, "fsck") and row[3] == len(orphan)
    assert (ctx.quarantine.root / row[2]).read_bytes() == orphan
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions[-2:] == ["dicom.quarantine", "fsck.repair"]
    db.conn.close()

    code, lines = fsck(settings, capsys)
    assert code == 0 and lines[-1].endswith(": consistent")


def test_leftover_partial_is_reported_and_removed(
    ctx: AppContext, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _, key = instances(ctx.pool.get())[0]
    partial = ctx.store.path(key).parent / ".tmp-abc123"
    partial.write_bytes(b"half a file")
    rel = partial.relative_to(ctx.store.root).as_posix()

    code, lines = fsck(settings, capsys)
    assert code == 1 and lines[0] == f"partial write: {rel} (an interrupted write)"

    age(partial)
    code, lines = fsck(settings, capsys, "--repair")
    assert code == 0 and lines[0].endswith("[repaired: removed]")
    assert not partial.exists()


def test_quarantine_row_without_its_file(
    ctx: AppContext, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ctx.pool.get()
    qid = ctx.quarantine.keep(
        db,
        b"not dicom",
        reason="test",
        source="test",
        origin=None,
        sop_instance_uid=None,
        actor=ACTOR,
    )
    storage_path = db.execute("SELECT storage_path FROM quarantine").fetchone()[0]
    (ctx.quarantine.root / storage_path).unlink()

    code, lines = fsck(settings, capsys, "--repair")

    assert code == 1
    assert lines[0] == f"quarantined file missing: quarantine {qid} ({storage_path})"
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 1


def test_tampered_audit_row_fails(
    ctx: AppContext, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ctx.pool.get()
    db.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    db.execute("UPDATE audit_log SET outcome = 'refused' WHERE id = 2")
    db.conn.commit()

    code, lines = fsck(settings, capsys)

    assert code == 1
    assert lines[0] == (
        "audit chain broken: at row 2: content does not match its hash (the row was edited)"
    )


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_data_dir_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    target = tmp_path / "no-such-dir"
    if kind == "file":
        target = tmp_path / "a-file"
        target.write_text("x")

    code = radiant(["fsck", "--data-dir", str(target)])

    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(target) in lines[0]
    assert captured.out == ""
    if kind == "missing":
        assert not target.exists()


def test_walk_index_merges_in_key_order(settings: Settings) -> None:
    """Keys whose order differs between path-wise and string-wise sorting still pair up."""
    context = prepare(settings)
    try:
        keys = ["dicom/1.2/9/1.dcm", "dicom/1.2.3/9/2.dcm", "dicom/1.20/9/3.dcm"]
        for key in keys:
            context.store.put(key, b"x")
        db = context.pool.get()
        db.execute(
            "INSERT INTO patients (id, mrn, created_at, updated_at) VALUES ('p','m','t','t')"
        )
        db.execute(
            "INSERT INTO studies (id, patient_id, study_uid, created_at, updated_at)"
            " VALUES ('st', 'p', '1', 't', 't')"
        )
        db.execute(
            "INSERT INTO series (id, study_id, series_uid, created_at, updated_at)"
            " VALUES ('se', 'st', '1', 't', 't')"
        )
        for n, key in enumerate([keys[0], keys[2], "dicom/1.3/9/4.dcm"]):
            db.execute(
                "INSERT INTO instances (id, series_id, sop_instance_uid, sop_class_uid,"
                " storage_key, size, sha256, received_at) VALUES (?, 'se', ?, '1', ?, 1, 'h', 't')",
                (f"i{n}", f"1.{n}", key),
            )
        db.conn.commit()

        seen = list(walk_index(db, context.store))

        assert seen == [
            IndexedFile("dicom/1.2.3/9/2.dcm", on_disk=True),
            IndexedFile("dicom/1.2/9/1.dcm", True, "i0", 1, "h", True),
            IndexedFile("dicom/1.20/9/3.dcm", True, "i1", 1, "h", True),
            IndexedFile("dicom/1.3/9/4.dcm", False, "i2", 1, "h", True),
        ]
    finally:
        context.pool.close_all()


def test_startup_recovery_uses_the_same_comparison(ctx: AppContext) -> None:
    ctx.store.put(ORPHAN_KEY, b"written, never indexed")

    report = recover(ctx)

    assert report.orphans_quarantined == 1 and not ctx.store.exists(ORPHAN_KEY)
    reason = ctx.pool.get().execute("SELECT reason FROM quarantine").fetchone()[0]
    assert reason == UNINDEXED
