"""Hostile files in a web upload (issue 16): each refused file says why in its own result and
the other files of the same upload are stored."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests import hostile
from tests.unit.test_upload import by_name, post_files, small, stored_uids

Headers = Callable[[str], dict[str, str]]
MIB = 1 << 20


def zip_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_files_beyond_the_parser_limits_are_quarantined_beside_good_ones(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    files = [
        (small(0).name, small(0).read_bytes()),
        ("nested.dcm", hostile.nested_sequences(1000)),
        ("long.dcm", hostile.length_beyond_input()),
        ("cut.dcm", hostile.base()[:1001]),
        (small(1).name, small(1).read_bytes()),
    ]
    response = post_files(client, as_role("technician"), files)
    assert response.status_code == 201, response.text
    results = by_name(response.json())
    assert "nested deeper than" in str(results["nested.dcm"]["reason"])
    assert "truncated" in str(results["long.dcm"]["reason"])
    assert "truncated" in str(results["cut.dcm"]["reason"])
    assert {results[n]["outcome"] for n in ("nested.dcm", "long.dcm", "cut.dcm")} == {"quarantined"}
    assert len(stored_uids(db)) == 2


def _dicom_like(size: int) -> bytes:
    """A preamble, 'DICM' and zeros: compresses about 1000:1."""
    return bytes(128) + b"DICM" + bytes(size - 132)


def test_many_small_highly_compressed_entries_are_refused(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    """Entries under 1 MiB skipped the ratio check: 500 of them in a 570 KB zip wrote 500 MiB
    of quarantine. Now each entry's ratio is checked from 64 KiB, and the archive's as a
    whole."""
    archive = zip_of({f"e{i}.dcm": _dicom_like(MIB - 1) for i in range(40)})
    assert len(archive) < 100_000
    response = post_files(client, as_role("technician"), [("bomb.zip", archive)])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["counts"]["quarantined"] == 0 and body["counts"]["stored"] == 0
    assert all("zip bomb" in str(f["reason"]) for f in body["files"]), body["files"][:2]
    assert int(db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]) == 0


def test_uploads_stop_at_the_free_disk_watermark(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    """The free-disk watermark of C-STORE (RADIANT_MIN_FREE_GB) applies to uploads too: 507
    and nothing written."""
    # as if the disk were nearly full (the route reads the settings for each upload)
    app.state.ctx.settings.__dict__["min_free_gb"] = 100_000.0
    response = post_files(client, as_role("technician"), [(small(0).name, small(0).read_bytes())])
    assert response.status_code == 507, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "disk" in response.json()["detail"]
    assert stored_uids(db) == set()
    assert int(db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]) == 0
