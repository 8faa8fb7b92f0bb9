"""Signed audit checkpoints (provisioning/audit_checkpoints.py): an untouched box verifies; a
row edited and the whole chain re-hashed with SQL is caught and named; damaged checkpoints and
deleted rows are caught; the checkpointer signs every N rows and at shutdown."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import prepare
from provisioning import audit_checkpoints as checkpoints
from tests.servers import RADIANT, clean_env

ACTOR = Actor(name="tester", role="admin", user_id="u-1", client="192.0.2.1")
FIELDS = (
    "id", "ts", "actor", "role", "action", "object_type", "object_id", "client", "outcome",
    "detail", "request_id", "prev_hash",
)  # fmt: skip


@pytest.fixture
def box(settings: Settings) -> sqlite_utils.Database:
    ctx = prepare(settings)
    db = ctx.pool.get()
    for n in range(1, 26):
        audit.record(db, ACTOR, "thing.touch", object_type="thing", object_id=f"t-{n}")
        if n in (10, 20):
            assert checkpoints.write(settings, db, "rows") is not None
    return db


def _verify_cli(settings: Settings, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RADIANT, "audit", "verify", "--data-dir", str(settings.data_dir)],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _rebuild_chain_with_sql(db_path: Path, edit_id: int) -> None:
    """What an intruder with the database file does: edit a row, drop the guard triggers and
    recompute every hash and link after it, and the recorded head, in plain SQL."""
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    conn.execute("UPDATE audit_log SET client = '10.66.6.6' WHERE id = ?", (edit_id,))
    prev = "0" * 64
    rows = conn.execute(f"SELECT {', '.join(FIELDS)} FROM audit_log ORDER BY id").fetchall()
    for values in rows:
        row = dict(zip(FIELDS, values, strict=True))
        row["prev_hash"] = prev
        body = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(body.encode()).hexdigest()
        conn.execute(
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, row["id"])
        )
        prev = digest
    conn.execute(
        "UPDATE settings SET value = ? WHERE key = 'audit.head'",
        (json.dumps({"id": rows[-1][0], "hash": prev}),),
    )
    conn.commit()
    conn.close()


def test_untouched_box_verifies(
    box: sqlite_utils.Database, settings: Settings, tmp_path: Path
) -> None:
    path = checkpoints.checkpoints_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    result = _verify_cli(settings, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "25 rows; 2 signed checkpoints cover rows 1-20 (5 newer rows" in result.stdout


def test_rebuilt_chain_is_caught_and_the_forged_row_named(
    box: sqlite_utils.Database, settings: Settings, tmp_path: Path
) -> None:
    _rebuild_chain_with_sql(settings.db_path, edit_id=13)
    # The chain on its own is consistent again: only the signed checkpoints can tell.
    assert audit.verify(box).ok
    result = _verify_cli(settings, tmp_path)
    assert result.returncode == 1
    assert "audit chain broken at row 13:" in result.stderr
    assert "signed checkpoints hold through row 10" in result.stderr


def test_fsck_checks_the_chain_against_the_signed_checkpoints(
    box: sqlite_utils.Database, settings: Settings, tmp_path: Path
) -> None:
    def fsck() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RADIANT, "fsck", "--data-dir", str(settings.data_dir)],
            env=clean_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    before = fsck()
    assert before.returncode == 0, before.stdout + before.stderr
    _rebuild_chain_with_sql(settings.db_path, edit_id=13)
    after = fsck()
    assert after.returncode == 1
    assert (
        "audit chain broken: at row 13: row 13 differs from what checkpoint 2 signed"
        in after.stdout
    )
    assert "signed checkpoints hold through row 10" in after.stdout


def test_forgery_after_the_last_checkpoint_is_not_blessed(
    box: sqlite_utils.Database, settings: Settings
) -> None:
    _rebuild_chain_with_sql(settings.db_path, edit_id=3)
    with pytest.raises(checkpoints.CheckpointError):
        # Rows 21-25 link to a rebuilt row 20: the next checkpoint refuses to sign them.
        checkpoints.write(settings, box, "rows")


def test_damaged_checkpoint_and_deleted_rows_are_caught(
    box: sqlite_utils.Database, settings: Settings
) -> None:
    path = checkpoints.checkpoints_path(settings)
    lines = path.read_text().splitlines()
    second = json.loads(lines[1])
    second["digests"] = "0" * len(second["digests"])
    path.write_text(lines[0] + "\n" + json.dumps(second) + "\n")
    verdict = checkpoints.verify(settings, box)
    assert not verdict.ok and verdict.first_bad_id == 11 and "checkpoint 2" in str(verdict.reason)
    path.write_text("\n".join(lines) + "\n")
    assert checkpoints.verify(settings, box).ok
    # Delete the newest rows (18-25) and fix the head so the chain alone looks complete.
    conn = sqlite3.connect(settings.db_path)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE id >= 18")
    last = conn.execute("SELECT hash FROM audit_log WHERE id = 17").fetchone()[0]
    conn.execute(
        "UPDATE settings SET value = ? WHERE key = 'audit.head'",
        (json.dumps({"id": 17, "hash": last}),),
    )
    conn.commit()
    conn.close()
    assert audit.verify(box).ok
    verdict = checkpoints.verify(settings, box)
    assert not verdict.ok and verdict.first_bad_id == 18 and "gone" in str(verdict.reason)


def test_a_removed_checkpoint_file_is_caught(
    box: sqlite_utils.Database, settings: Settings, tmp_path: Path
) -> None:
    checkpoints.checkpoints_path(settings).unlink()
    assert checkpoints.verify(settings, box).ok  # 25 rows: fewer than one checkpoint's worth
    small = settings.model_copy(update={"audit_checkpoint_rows": 10})
    verdict = checkpoints.verify(small, box)
    assert not verdict.ok and verdict.first_bad_id == 1
    assert "no signed checkpoint although the log has 25 rows" in str(verdict.reason)


def test_checkpointer_signs_every_n_rows_and_at_shutdown(settings: Settings) -> None:
    ctx = prepare(settings)
    db = ctx.pool.get()
    writer = checkpoints.Checkpointer(settings, ctx.pool, every=5, poll_s=3600)
    for n in range(4):
        audit.record(db, ACTOR, "thing.touch", object_id=f"a-{n}")
    assert writer.maybe_write() is None  # 4 rows: not yet
    audit.record(db, ACTOR, "thing.touch", object_id="a-4")
    first = writer.maybe_write()
    assert first is not None and first["row_id"] == 5 and first["reason"] == "rows"
    audit.record(db, ACTOR, "thing.touch", object_id="a-5")
    writer.stop()
    last = checkpoints.latest(settings)
    assert last is not None and last["row_id"] == 6 and last["reason"] == "shutdown"
    assert last["from_id"] == 6 and len(last["digests"]) == checkpoints.DIGEST_HEX
    assert checkpoints.verify(settings, db).ok


_LINE = st.one_of(
    st.just(""),
    st.just("   "),
    st.text(max_size=40),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps),
    st.lists(st.integers(), max_size=3).map(json.dumps),
)


@given(
    lines=st.lists(_LINE, max_size=12),
    breaks=st.lists(st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\x85"]), min_size=12),
    end=st.sampled_from(["", "\n", "\n\n", " \n"]),
    block=st.integers(min_value=1, max_value=9),
)
@hypothesis_settings(max_examples=300, deadline=None)
def test_latest_reads_the_last_checkpoint_from_the_end_as_a_whole_read_would(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    breaks: list[str],
    end: str,
    block: int,
) -> None:
    """``latest`` reads the file backwards (it is polled every 2 s and grows with every 100
    audit rows for years); whatever the file holds, its answer is the last entry a read of
    the whole file gives, or None."""
    config = Settings(data_dir=tmp_path_factory.mktemp("box"))
    path = checkpoints.checkpoints_path(config)
    path.parent.mkdir(parents=True)
    path.write_bytes(
        ("".join(line + br for line, br in zip(lines, breaks, strict=False)) + end).encode()
    )
    whole = checkpoints.read(config)
    assert checkpoints.latest(config, block=block) == (whole[-1] if whole else None)
    assert checkpoints.latest(config) == (whole[-1] if whole else None)


def test_latest_of_a_missing_or_empty_file_is_none(settings: Settings) -> None:
    assert checkpoints.latest(settings) is None
    checkpoints.checkpoints_path(settings).parent.mkdir(parents=True, exist_ok=True)
    checkpoints.checkpoints_path(settings).write_bytes(b"\n \n")
    assert checkpoints.latest(settings) is None
