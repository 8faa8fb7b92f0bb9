"""Bad uploads, one class per test: each gets a clear reason (per file or as a problem) and the
good files of the same request are stored all the same; nothing is left in the temp folder."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
import sqlite_utils
from fastapi.testclient import TestClient

from appliance.config import Settings
from appliance.studies.upload import MAX_COMPRESSION_RATIO, MIB, NESTED_ZIP, NOT_DICOM
from tests.dicom_files import DATA, instance_files

Headers = Callable[[str], dict[str, str]]
BOUNDARY = "radiant-test-boundary-7f3a"
SMALL = "dicomdir_pcir_3patients_prior_current"  # 16x16 images, a few KB each


def small(index: int = 0) -> Path:
    return instance_files(SMALL)[index]


def post_files(
    client: TestClient, headers: dict[str, str], files: list[tuple[str, bytes]]
) -> httpx.Response:
    return client.post(
        "/api/studies/upload",
        headers=headers,
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )


def multipart(parts: Sequence[tuple[str, str | None, bytes]], *, close: bool = True) -> bytes:
    """A multipart/form-data body by hand: (field, filename or None for a plain field, data)."""
    out = b""
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += (
            (
                f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post_streamed(client: TestClient, headers: dict[str, str], body: bytes) -> httpx.Response:
    """Sent chunked, without a Content-Length: the limit is found while reading."""
    return client.post(
        "/api/studies/upload",
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        content=chunks(body),
    )


def zip_bytes(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return out.getvalue()


def by_name(body: dict[str, object]) -> dict[str, dict[str, object]]:
    files = body["files"]
    assert isinstance(files, list)
    return {str(f["name"]): f for f in files}


def stored_uids(db: sqlite_utils.Database) -> set[str]:
    return {r[0] for r in db.execute("SELECT sop_instance_uid FROM instances")}


def leftovers(settings: Settings) -> list[Path]:
    root = settings.data_dir / "uploads"
    return list(root.iterdir()) if root.exists() else []


def test_malformed_files_are_quarantined_beside_good_ones(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database, settings: Settings
) -> None:
    bad = [
        "MR_truncated.dcm",
        "badVR.dcm",
        "J2K_pixelrep_mismatch.dcm",
        "meta_missing_tsyntax.dcm",
    ]
    good = instance_files(SMALL)[:3]
    files = [(p.name, p.read_bytes()) for p in good[:2]]
    files += [(name, (DATA / "malformed" / name).read_bytes()) for name in bad]
    files += [(good[2].name, good[2].read_bytes())]
    response = post_files(client, as_role("technician"), files)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["counts"] == {"stored": 3, "duplicate": 0, "quarantined": 4, "rejected": 0}
    results = by_name(body)
    for name in bad:
        assert results[name]["outcome"] == "quarantined"
        assert results[name]["reason"] and results[name]["quarantine_id"]
    assert "truncated" in str(results["MR_truncated.dcm"]["reason"])
    assert "not a number" in str(results["badVR.dcm"]["reason"])
    kept = {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, size, sha256 FROM quarantine")}
    for name in bad:
        data = (DATA / "malformed" / name).read_bytes()
        assert kept[str(results[name]["quarantine_id"])] == (
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
    assert len(stored_uids(db)) == 3
    assert leftovers(settings) == []


def test_a_file_that_is_not_dicom_is_rejected(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    files = [
        ("notes.txt", b"Referral letter: please scan the chest.\n" * 20),
        ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200),
        ("empty.dcm", b""),
        (small().name, small().read_bytes()),
    ]
    body = post_files(client, as_role("technician"), files).json()
    results = by_name(body)
    assert results["notes.txt"]["outcome"] == results["photo.png"]["outcome"] == "rejected"
    assert results["notes.txt"]["reason"] == NOT_DICOM
    assert results["empty.dcm"]["reason"] == "empty file"
    assert results[small().name]["outcome"] == "stored"
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0  # not kept


def test_zip_slip_entry_is_refused(client: TestClient, as_role: Headers) -> None:
    archive = zip_bytes(
        [
            ("../evil.dcm", small(0).read_bytes()),
            ("a\\..\\..\\evil2.dcm", small(1).read_bytes()),
            ("ok/good.dcm", small(2).read_bytes()),
        ]
    )
    results = by_name(post_files(client, as_role("admin"), [("cd.zip", archive)]).json())
    assert results["../evil.dcm"]["outcome"] == "rejected"
    assert "path traversal" in str(results["../evil.dcm"]["reason"])
    assert results["a\\..\\..\\evil2.dcm"]["outcome"] == "rejected"
    assert results["ok/good.dcm"]["outcome"] == "stored"
    assert results["ok/good.dcm"]["archive"] == "cd.zip"


def test_absolute_path_entry_is_refused(client: TestClient, as_role: Headers) -> None:
    archive = zip_bytes(
        [
            ("/etc/evil.dcm", small(0).read_bytes()),
            ("C:/Windows/evil.dcm", small(1).read_bytes()),
            ("good.dcm", small(2).read_bytes()),
        ]
    )
    results = by_name(post_files(client, as_role("admin"), [("cd.zip", archive)]).json())
    for name in ("/etc/evil.dcm", "C:/Windows/evil.dcm"):
        assert results[name]["outcome"] == "rejected"
        assert "absolute path" in str(results[name]["reason"])
    assert results["good.dcm"]["outcome"] == "stored"


def test_symlink_entry_is_refused(client: TestClient, as_role: Headers) -> None:
    link = zipfile.ZipInfo("link.dcm")
    link.create_system = 3  # Unix: the mode is in the high 16 bits of external_attr
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = zip_bytes([(link, b"/etc/passwd"), ("good.dcm", small().read_bytes())])
    results = by_name(post_files(client, as_role("admin"), [("cd.zip", archive)]).json())
    assert results["link.dcm"]["outcome"] == "rejected"
    assert "symbolic link" in str(results["link.dcm"]["reason"])
    assert results["good.dcm"]["outcome"] == "stored"


def test_zip_bomb_entry_is_refused(client: TestClient, as_role: Headers) -> None:
    bomb = b"\x00" * (32 * MIB)  # deflates about 1000:1
    archive = zip_bytes([("bomb.dcm", bomb), ("good.dcm", small().read_bytes())])
    assert len(archive) < 100 * 1024
    response = post_files(client, as_role("admin"), [("bomb.zip", archive)])
    assert response.status_code == 201
    results = by_name(response.json())
    reason = str(results["bomb.dcm"]["reason"])
    assert results["bomb.dcm"]["outcome"] == "rejected"
    assert "zip bomb" in reason and f"{MAX_COMPRESSION_RATIO}:1" in reason
    assert results["good.dcm"]["outcome"] == "stored"


def test_nested_zip_is_reported_not_expanded(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    inner = zip_bytes([("inner.dcm", small(0).read_bytes())])
    archive = zip_bytes(
        [
            ("inner.zip", inner),
            ("disguised.dcm", inner),  # a zip by its content, whatever its name
            ("good.dcm", small(1).read_bytes()),
        ]
    )
    results = by_name(post_files(client, as_role("admin"), [("outer.zip", archive)]).json())
    assert results["inner.zip"]["reason"] == results["disguised.dcm"]["reason"] == NESTED_ZIP
    assert results["good.dcm"]["outcome"] == "stored"
    assert len(stored_uids(db)) == 1  # the inner file was not ingested


def test_truncated_zip_is_rejected_and_the_rest_is_stored(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    whole = zip_bytes([(p.name, p.read_bytes()) for p in instance_files(SMALL)[:5]])
    cut = whole[: len(whole) * 3 // 5]
    files = [("cut.zip", cut), (small(10).name, small(10).read_bytes())]
    body = post_files(client, as_role("technician"), files).json()
    results = by_name(body)
    assert results["cut.zip"]["outcome"] == "rejected"
    assert "truncated or damaged" in str(results["cut.zip"]["reason"])
    assert results[small(10).name]["outcome"] == "stored"
    assert body["counts"]["stored"] == 1


def test_a_cd_as_zip_skips_dicomdir_and_notes(client: TestClient, as_role: Headers) -> None:
    root = DATA / SMALL
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            archive.write(path, path.relative_to(root).as_posix())  # directories too
    body = post_files(client, as_role("technician"), [("cd.zip", out.getvalue())]).json()
    results = by_name(body)
    assert body["counts"]["stored"] == 31
    assert "media index" in str(results["DICOMDIR"]["reason"])
    assert results["README.txt"]["reason"] == NOT_DICOM
    assert not any(name.endswith("/") for name in results)  # directory entries are skipped
    assert len(body["study_ids"]) == 6


def test_a_dicomdir_under_another_name_is_skipped_not_quarantined(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    """A Philips DIRFILE (a Part 10 file of Media Storage Directory Storage, 1.2.840.10008.1.3.10,
    under another name) in an uploaded series folder or on its own: a media index, skipped like a
    DICOMDIR, never quarantined; the images beside it are stored."""
    dicomdir = (DATA / SMALL / "DICOMDIR").read_bytes()
    images = [(p.name, p.read_bytes()) for p in instance_files(SMALL)[:2]]
    archive = zip_bytes([("SE00001/DIRFILE", dicomdir), *[("SE00001/" + n, b) for n, b in images]])
    body = post_files(
        client, as_role("technician"), [("series.zip", archive), ("DIRFILE", dicomdir)]
    ).json()
    results = by_name(body)
    assert "media index" in str(results["SE00001/DIRFILE"]["reason"])
    assert results["SE00001/DIRFILE"]["outcome"] == results["DIRFILE"]["outcome"] == "rejected"
    assert "media index" in str(results["DIRFILE"]["reason"])
    assert body["counts"]["stored"] == 2
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0


def test_an_empty_request_is_422(client: TestClient, as_role: Headers) -> None:
    tech = as_role("technician")
    for body in (
        multipart([]),
        multipart([("comment", None, b"no files here")]),
        multipart([("file", "wrong-field.dcm", small().read_bytes())]),
        b"",
    ):
        response = post_streamed(client, tech, body)
        assert response.status_code == 422, body[:60]
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"].startswith("no files")
    no_boundary = client.post(
        "/api/studies/upload",
        headers={**tech, "Content-Type": "multipart/form-data"},
        content=b"x",
    )
    assert no_boundary.status_code == 422


def test_a_body_that_is_not_multipart_is_415(client: TestClient, as_role: Headers) -> None:
    tech = as_role("technician")
    for response in (
        client.post("/api/studies/upload", headers=tech, json={"files": []}),
        client.post(
            "/api/studies/upload",
            headers={**tech, "Content-Type": "application/dicom"},
            content=small().read_bytes(),
        ),
    ):
        assert response.status_code == 415
        assert response.headers["content-type"] == "application/problem+json"
        assert "multipart/form-data" in response.json()["detail"]


def test_a_cut_off_body_keeps_the_files_completed_before(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database, settings: Settings
) -> None:
    body = multipart(
        [("files", "one.dcm", small(0).read_bytes()), ("files", "two.dcm", small(1).read_bytes())]
    )
    cut = body[: body.index(b'filename="two.dcm"') + 400]
    response = post_streamed(client, as_role("technician"), cut)
    assert response.status_code == 422
    problem = response.json()
    assert "cut off" in problem["detail"] and "1 are stored and kept" in problem["detail"]
    assert [(f["name"], f["outcome"]) for f in problem["files"]] == [("one.dcm", "stored")]
    assert len(stored_uids(db)) == 1
    assert leftovers(settings) == []


class TestSizeLimits:
    """An appliance whose upload limit is 1 MiB (so one archive may expand to 4 MiB)."""

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return Settings(data_dir=tmp_path / "data", upload_max_mb=1)

    def test_declared_too_large_is_refused_before_reading(
        self, client: TestClient, as_role: Headers, db: sqlite_utils.Database
    ) -> None:
        ct = instance_files("ct_ge_head_tilt18_varspacing")[:3]  # about 1.5 MiB
        response = post_files(client, as_role("technician"), [(p.name, p.read_bytes()) for p in ct])
        assert response.status_code == 413
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert "RADIANT_UPLOAD_MAX_MB" in problem["detail"]
        assert "Nothing was stored" in problem["detail"] and problem["files"] == []
        assert stored_uids(db) == set()

    def test_streamed_over_the_limit_keeps_what_came_before(
        self, client: TestClient, as_role: Headers, db: sqlite_utils.Database, settings: Settings
    ) -> None:
        ct = instance_files("ct_ge_head_tilt18_varspacing")[:3]  # 3 x 514 KiB
        parts = [("files", small().name, small().read_bytes())]
        parts += [("files", p.name, p.read_bytes()) for p in ct]
        response = post_streamed(client, as_role("technician"), multipart(parts))
        assert response.status_code == 413, response.text
        problem = response.json()
        kept = [(f["name"], f["outcome"]) for f in problem["files"]]
        # the small file and the first CT slice ended before 1 MiB; the second did not
        assert kept == [(small().name, "stored"), (ct[0].name, "stored")]
        assert "are stored and kept" in problem["detail"]
        assert problem["counts"]["stored"] == 2 and len(problem["study_ids"]) == 2
        assert stored_uids(db) == {f["sop_instance_uid"] for f in problem["files"]}
        outcome = db.execute(
            "SELECT outcome FROM audit_log WHERE action = 'study.upload'"
        ).fetchone()[0]
        assert outcome == "partial"
        assert leftovers(settings) == []

    def test_an_archive_expanding_beyond_its_limit_is_refused_whole(
        self, client: TestClient, as_role: Headers, db: sqlite_utils.Database
    ) -> None:
        # five entries just under the 1 MiB ratio threshold: 5 MiB expanded from a few KiB
        filler = [(f"pad{i}.dcm", b"\x00" * (MIB - 1)) for i in range(5)]
        archive = zip_bytes([("good.dcm", small().read_bytes()), *filler])
        files = [("big.zip", archive), (small(1).name, small(1).read_bytes())]
        body = post_files(client, as_role("technician"), files).json()
        results = by_name(body)
        assert results["big.zip"]["outcome"] == "rejected"
        assert "over the 4.0 MiB limit for one archive" in str(results["big.zip"]["reason"])
        assert "good.dcm" not in results  # nothing of that archive was read
        assert results[small(1).name]["outcome"] == "stored"
        assert len(stored_uids(db)) == 1
