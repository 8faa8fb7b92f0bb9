"""The shared durable-file helper (:mod:`radiant_common.durable`) and the shared row helpers
of :mod:`appliance.db.rows` (dict rows, NotFound, LIKE escaping), on real files and SQLite."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlite_utils

from appliance.db.rows import escape_like, fetch_all, fetch_found
from appliance.errors import NotFound
from radiant_common.durable import TEMP_PREFIX, fsync_dir, replace, write_atomic, write_new


def test_write_atomic_replaces_with_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    previous = os.umask(0o077)
    try:
        write_atomic(target, b"new", mode=0o640)
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_write_atomic_without_replace_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    write_atomic(target, b"first", replace=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", replace=False)
    assert target.read_bytes() == b"first"
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())


def test_write_atomic_failure_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "folder"
    target.mkdir()  # a folder cannot be replaced by a file
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert target.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]


def test_write_new_refuses_an_existing_file_and_replace_moves_durably(tmp_path: Path) -> None:
    first = tmp_path / "a.dcm"
    write_new(first, b"bytes")
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_new(first, b"other")
    assert first.read_bytes() == b"bytes"
    moved = tmp_path / "sub" / "b.dcm"
    moved.parent.mkdir()
    replace(first, moved)
    assert moved.read_bytes() == b"bytes" and not first.exists()
    fsync_dir(tmp_path)
    with pytest.raises(NotADirectoryError):
        fsync_dir(moved)


def test_row_helpers_and_like_escape_on_sqlite() -> None:
    db = sqlite_utils.Database(memory=True)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    for name in ("50%_off", "500 off", "a\\b", "ab"):
        db.execute("INSERT INTO t (name) VALUES (?)", (name,))
    assert fetch_all(db, "SELECT id, name FROM t WHERE id = ?", (1,)) == [
        {"id": 1, "name": "50%_off"}
    ]
    assert fetch_found(db, "SELECT name FROM t WHERE id = ?", (4,), "row 4") == {"name": "ab"}
    with pytest.raises(NotFound, match="row 9 not found"):
        fetch_found(db, "SELECT name FROM t WHERE id = ?", (9,), "row 9")

    def like(word: str) -> list[str]:
        rows = fetch_all(
            db, "SELECT name FROM t WHERE name LIKE ? ESCAPE '\\' ORDER BY id", (f"%{word}%",)
        )
        return [r["name"] for r in rows]

    assert like(escape_like("%_")) == ["50%_off"]
    assert like(escape_like("0%")) == ["50%_off"]
    assert like(escape_like("a\\b")) == ["a\\b"]
    assert like("0_") == ["50%_off", "500 off"]  # unescaped: _ matches any one character
