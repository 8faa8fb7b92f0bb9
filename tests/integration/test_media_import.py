"""USB/CD import with real media trees (copies of tests/data), real SQLite and the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import sqlite_utils

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.dicom.media import (
    APPLEDOUBLE,
    MEDIA_INDEX,
    MEDIA_INDEX_OBJECT,
    NOT_DICOM,
    DicomdirInvalid,
    ImportProgress,
    dicomdir_references,
    import_media,
)
from tests.servers import RADIANT, clean_env

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data"
PCIR = DATA / "dicomdir_pcir_3patients_prior_current"
MR = DATA / "mr_siemens_t1_sag_brain_35sl"
MALFORMED = DATA / "malformed"
XR = DATA / "xr_chest_cr_dx" / "NIH_ChestXray_DX_SC.dcm"
ACTOR = Actor(name="tech", role="technician", client="127.0.0.1")


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    context = prepare(settings)
    yield context
    context.pool.close_all()


def copy_media(source: Path, dest: Path) -> Path:
    """Copy a read-only test set and make the copy writable (so the test can edit it)."""
    shutil.copytree(source, dest)
    for dirpath, _dirnames, filenames in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(Path(dirpath, name), 0o644)
    return dest


def snapshot(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under ``root``: kind, size, mtime (ns) and SHA-256 for files."""
    seen: dict[str, tuple[str, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
            digest = ""
            if stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IRUSR:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            seen[path.relative_to(root).as_posix()] = (kind, info.st_size, info.st_mtime_ns, digest)
    seen["."] = ("dir", 0, root.stat().st_mtime_ns, "")
    return seen


def image_record_count(dicomdir: Path) -> int:
    ds = pydicom.dcmread(dicomdir)
    return sum(1 for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE")


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    return {
        t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("patients", "studies", "series", "instances", "quarantine")
    }


def rewrite_dicomdir(ds: pydicom.Dataset, path: Path) -> None:
    """Save an edited DICOMDIR with its record offsets (PS3.3 F.3.2.1) fixed up."""
    old = [record.seq_item_tell for record in ds.DirectoryRecordSequence]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path)
        new = [r.seq_item_tell for r in pydicom.dcmread(path).DirectoryRecordSequence]
        moved = {0: 0, **dict(zip(old, new, strict=True))}
        for record in ds.DirectoryRecordSequence:
            for keyword in (
                "OffsetOfTheNextDirectoryRecord",
                "OffsetOfReferencedLowerLevelDirectoryEntity",
            ):
                record[keyword].value = moved[record[keyword].value]
        for keyword in (
            "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity",
            "OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity",
        ):
            ds[keyword].value = moved[ds[keyword].value]
        ds.save_as(path)


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def run_cli(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), *RADIANT, *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
        timeout=300,
    )


# -- DICOMDIR ---------------------------------------------------------------------------------


def test_dicomdir_import_then_all_duplicates(ctx: AppContext, tmp_path: Path) -> None:
    media = copy_media(PCIR, tmp_path / "media" / "PCIR_CD")
    before = snapshot(media)
    expected = image_record_count(media / "DICOMDIR")
    seen: list[ImportProgress] = []

    summary = import_media(ctx, media, actor=ACTOR, progress=seen.append)

    assert summary.used_dicomdir and summary.dicomdir_problem is None
    assert summary.ok and len(summary.imported) == expected == summary.files_total
    assert not (summary.duplicates or summary.quarantined or summary.refused or summary.errors)
    db = ctx.pool.get()
    assert counts(db) == {
        "patients": 2,
        "studies": 6,
        "series": 13,
        "instances": expected,
        "quarantine": 0,
    }
    assert len(summary.study_ids) == 6
    assert set(summary.study_ids) == {r[0] for r in db.execute("SELECT id FROM studies")}
    sources = db.execute("SELECT DISTINCT source, origin FROM instances").fetchall()
    assert sources == [("usb", "PCIR_CD")]
    # Paths in the summary are relative to the media and name real files there.
    assert all(not p.startswith("/") and (media / p).is_file() for p in summary.imported)
    # Progress: after every file, ending at the totals, counts adding up.
    assert len(seen) == expected
    last = seen[-1]
    assert (last.files_done, last.bytes_done) == (last.files_total, last.bytes_total)
    assert last.bytes_total == sum((media / p).stat().st_size for p in summary.imported)
    assert [p.files_done for p in seen] == list(range(1, expected + 1))
    assert last.imported == expected
    # One media.import audit row: counts, no paths, no label, no PHI.
    rows = db.execute("SELECT detail, outcome FROM audit_log WHERE action = 'media.import'")
    (detail_text, outcome), *rest = rows.fetchall()
    assert not rest and outcome == "success"
    detail = json.loads(detail_text)
    assert detail["imported"] == expected and detail["files"] == expected
    for secret in ("PCIR_CD", "77654033", "Doe", "/"):
        assert secret not in detail_text

    again = import_media(ctx, media, actor=ACTOR)
    assert again.ok and len(again.duplicates) == expected and not again.imported
    assert sorted(again.study_ids) == sorted(summary.study_ids)
    assert counts(db)["instances"] == expected
    assert snapshot(media) == before  # the media was only read


def test_cli_imports_media_and_reports_duplicates(tmp_path: Path) -> None:
    media = copy_media(PCIR, tmp_path / "PCIR")
    before = snapshot(media)
    data_dir = tmp_path / "data"
    expected = image_record_count(media / "DICOMDIR")

    first = run_cli("import", str(media), "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"1/{expected} files")
    assert any(line.startswith(f"{expected}/{expected} files") for line in lines)
    assert f"DICOMDIR: imported {expected}, duplicates 0" in first.stdout
    assert "studies touched 6" in first.stdout

    second = run_cli("import", str(media), "--data-dir", str(data_dir))
    assert second.returncode == 0, second.stderr
    assert f"imported 0, duplicates {expected}, quarantined 0" in second.stdout
    assert snapshot(media) == before


def test_dicomdir_references_leaving_the_media_are_refused(ctx: AppContext, tmp_path: Path) -> None:
    media = copy_media(PCIR, tmp_path / "mnt" / "CDROM")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.dcm"
    shutil.copyfile(XR, secret)
    (media / "LINK").symlink_to(secret)
    ds = pydicom.dcmread(media / "DICOMDIR")
    images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images[0].ReferencedFileID = ["..", "..", "outside", "secret.dcm"]
        images[1].ReferencedFileID = str(secret)
        images[2].ReferencedFileID = "LINK"
    rewrite_dicomdir(ds, media / "DICOMDIR")
    total = len(images)
    before = snapshot(media)

    summary = import_media(ctx, media, actor=ACTOR)

    assert summary.used_dicomdir
    refused = {issue.path: issue.reason for issue in summary.refused}
    assert refused == {
        "../../outside/secret.dcm": "leaves the media ('..' in the File ID)",
        str(secret): "is an absolute path, not a File ID inside the media",
        "LINK": "resolves outside the media (through a symbolic link)",
    }
    assert len(summary.imported) == total - 3 and not summary.ok
    db = ctx.pool.get()
    found = db.execute(
        "SELECT COUNT(*) FROM instances WHERE sop_instance_uid = ?", (sop_uid(secret),)
    ).fetchone()[0]
    assert found == 0
    assert snapshot(media) == before


def test_lowercase_iso9660_names_and_missing_reference(ctx: AppContext, tmp_path: Path) -> None:
    """A CD mounted without Rock Ridge shows ``dicomdir`` and lowercase folders."""
    media = copy_media(PCIR, tmp_path / "cdrom")
    expected = image_record_count(media / "DICOMDIR")
    (media / "DICOMDIR").rename(media / "dicomdir")
    for folder in sorted(media.glob("*/*"), reverse=True):
        if folder.is_dir():
            folder.rename(folder.with_name(folder.name.lower()))
    (media / "77654033" / "cr1" / "6154").unlink()

    summary = import_media(ctx, media, actor=ACTOR)

    assert summary.used_dicomdir
    assert len(summary.imported) == expected - 1
    assert [(e.path, e.reason) for e in summary.errors] == [
        ("77654033/CR1/6154", "referenced by the DICOMDIR but not found on the media")
    ]


def test_invalid_dicomdir_is_reported_and_the_media_walked(ctx: AppContext, tmp_path: Path) -> None:
    """``DICOMDIR-nopatient`` (PATIENT records of an invalid type) put in place of a DICOMDIR."""
    media = copy_media(PCIR, tmp_path / "usb")
    expected = image_record_count(media / "DICOMDIR")
    shutil.copyfile(MALFORMED / "DICOMDIR-nopatient", media / "DICOMDIR")

    summary = import_media(ctx, media, actor=ACTOR)

    assert not summary.used_dicomdir
    assert summary.dicomdir_problem is not None
    # Its root offset points at an IMAGE record; the PATIENT records are typed 'UNKNOWN'.
    assert summary.dicomdir_problem.startswith("the DICOMDIR is invalid: an IMAGE record is at")
    assert "(PS3.3 F.4)" in summary.dicomdir_problem
    assert "walked" in summary.dicomdir_problem
    assert len(summary.imported) == expected and summary.ok
    skipped = {issue.path: issue.reason for issue in summary.skipped}
    assert skipped["DICOMDIR"] == MEDIA_INDEX
    assert skipped["README.txt"] == NOT_DICOM and skipped["LICENSE.txt"] == NOT_DICOM
    assert counts(ctx.pool.get())["studies"] == 6


def test_dicomdir_tree_checks() -> None:
    ds = pydicom.dcmread(PCIR / "DICOMDIR")
    references = dicomdir_references(ds)
    assert len(references) == image_record_count(PCIR / "DICOMDIR")
    assert references[0] == ("77654033", "CR1", "6154")  # the DICOMDIR's own order


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ("unknown_type", "a directory record has the invalid type 'UNKNOWN' (PS3.3 F.5)"),
        ("loop", "its directory records form a loop"),
        ("dangling", "a record offset (7) points to no directory record"),
        ("study_at_top", "a STUDY record is at the top level (PS3.3 F.4)"),
        ("no_references", "it references no files"),
    ],
)
def test_invalid_dicomdir_trees_are_named(edit: str, reason: str) -> None:
    ds = pydicom.dcmread(PCIR / "DICOMDIR")
    records = list(ds.DirectoryRecordSequence)
    patient = records[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if edit == "unknown_type":
            patient.DirectoryRecordType = "UNKNOWN"
        elif edit == "loop":
            patient.OffsetOfTheNextDirectoryRecord = patient.seq_item_tell
        elif edit == "dangling":
            patient.OffsetOfReferencedLowerLevelDirectoryEntity = 7
        elif edit == "study_at_top":
            first = patient.OffsetOfReferencedLowerLevelDirectoryEntity
            ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = first
        else:
            for record in records:
                if "ReferencedFileID" in record:
                    del record.ReferencedFileID
    with pytest.raises(DicomdirInvalid) as caught:
        dicomdir_references(ds)
    assert str(caught.value) == reason


# -- walking a folder -------------------------------------------------------------------------


def test_folder_without_dicomdir_is_walked(ctx: AppContext, tmp_path: Path) -> None:
    media = copy_media(MR, tmp_path / "STICK")
    (media / "notes.txt").write_text("scanner export, see README\n")
    (media / "sub").mkdir()
    shutil.copyfile(XR, media / "sub" / "IMG00001")  # DICOM without .dcm
    (media / "._IMG00001.dcm").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 200)  # AppleDouble
    (media / ".Trashes").mkdir()
    shutil.copyfile(XR, media / ".Trashes" / "deleted.dcm")
    slices = len(list(MR.glob("*.dcm")))
    before = snapshot(media)
    seen: list[ImportProgress] = []

    summary = import_media(ctx, media, actor=ACTOR, progress=seen.append)

    assert not summary.used_dicomdir and summary.dicomdir_problem is None
    assert len(summary.imported) == slices + 1 and "sub/IMG00001" in summary.imported
    skipped = {issue.path: issue.reason for issue in summary.skipped}
    assert skipped == {
        "._IMG00001.dcm": APPLEDOUBLE,
        "LICENSE.txt": NOT_DICOM,
        "README.txt": NOT_DICOM,
        "notes.txt": NOT_DICOM,
    }
    assert summary.ok and len(summary.study_ids) == 2
    assert seen[-1].files_done == seen[-1].files_total == slices + 5
    assert seen[-1].bytes_done == seen[-1].bytes_total
    assert snapshot(media) == before


def test_malformed_folder_is_quarantined_with_a_reason_per_file(tmp_path: Path) -> None:
    """The malformed set walked: every DICOM-looking file is quarantined with its reason.

    ``DICOMDIR-nopatient`` is not named DICOMDIR, but its File Meta names the Media Storage
    Directory Storage SOP Class: a media index, skipped and said so, not quarantined.
    ``no_meta.dcm`` lacks the DICM prefix but is named ``.dcm``, so it is read and quarantined
    rather than skipped.
    """
    media = copy_media(MALFORMED, tmp_path / "BAD")
    before = snapshot(media)
    data_dir = tmp_path / "data"

    result = run_cli("import", str(media), "--data-dir", str(data_dir))

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "radiant: 7 files were not imported (quarantined, refused or unreadable)"
    ]
    quarantined = {
        line.split(": ", 2)[1]: line.split(": ", 2)[2]
        for line in result.stdout.splitlines()
        if line.startswith("quarantined: ")
    }
    dicom_like = {p.name for p in MALFORMED.iterdir() if not p.name.endswith(".txt")}
    # the 12-bit lossy JPEG that pylibjpeg refuses is decoded by GDCM: imported
    assert set(quarantined) == dicom_like - {"DICOMDIR-nopatient", "JPEG-lossy.dcm"}
    assert "imported 1," in result.stdout
    assert all(reason.strip() for reason in quarantined.values())
    assert f"skipped: DICOMDIR-nopatient: {MEDIA_INDEX_OBJECT}" in result.stdout
    assert "truncated" in quarantined["MR_truncated.dcm"]
    assert "not a DICOM file" in quarantined["no_meta.dcm"]
    assert "skipped (not DICOM) 3, media indexes skipped 1" in result.stdout
    db = sqlite_utils.Database(data_dir / "radiant.db")
    rows = db.execute("SELECT source, origin, reason FROM quarantine").fetchall()
    assert len(rows) == 7 and {(r[0], r[1]) for r in rows} == {("usb", "BAD")}
    assert db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1
    db.conn.close()
    assert snapshot(media) == before


# -- failures ---------------------------------------------------------------------------------


def test_unreadable_file_is_reported_not_fatal(tmp_path: Path) -> None:
    media = tmp_path / "STICK"
    media.mkdir()
    files = sorted(MR.glob("*.dcm"))[:3]
    for source in files:
        shutil.copyfile(source, media / source.name)
    locked = media / files[1].name
    locked.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        # root reads mode-000 files; without the DAC override capabilities it cannot.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is missing to drop DAC caps")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]

    result = run_cli("import", str(media), "--data-dir", str(tmp_path / "data"), prefix=prefix)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: {locked.name}: cannot read: permission denied" in result.stdout
    assert "imported 2," in result.stdout and "errors 1" in result.stdout
    assert "not imported" in result.stderr


def test_cancel_stops_after_the_current_file(ctx: AppContext, tmp_path: Path) -> None:
    media = copy_media(MR, tmp_path / "STICK")
    cancel = threading.Event()
    seen: list[ImportProgress] = []

    def progress(p: ImportProgress) -> None:
        seen.append(p)
        cancel.set()

    summary = import_media(ctx, media, actor=ACTOR, progress=progress, cancel=cancel)

    assert summary.stopped == "cancelled" and not summary.ok
    assert len(seen) == 1 and len(summary.imported) == 1
    detail = (
        ctx.pool.get()
        .execute("SELECT detail FROM audit_log WHERE action = 'media.import'")
        .fetchone()[0]
    )
    assert json.loads(detail)["stopped"] == "cancelled"


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_cli_bad_path_is_one_line_exit_2(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "nothing-here"
    if kind == "file":
        target = tmp_path / "image.dcm"
        shutil.copyfile(XR, target)

    result = run_cli("import", str(target), "--data-dir", str(tmp_path / "data"))

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0]
    assert ("no such folder" if kind == "missing" else "not a folder") in lines[0]
    assert not (tmp_path / "data").exists()


# -- a DICOMDIR-class object inside a series folder (issue 16) ------------------------------


def test_a_dicomdir_class_object_in_a_series_folder_is_skipped_as_a_media_index(
    tmp_path: Path,
) -> None:
    """Philips consoles write a DIRFILE into each series folder: a Part 10 file of the Media
    Storage Directory Storage SOP Class (1.2.840.10008.1.3.10), i.e. a DICOMDIR under another
    name. Found while walking, it is a media index, not an instance: skipped and said so; the
    import of the series' images succeeds (exit 0) and nothing is quarantined. The DIRFILE here
    is a real DICOMDIR (of the PCIR set) saved under that name."""
    media = tmp_path / "STICK"
    series = copy_media(MR, media / "DICOM" / "ST00001" / "SE00001")
    dirfile = pydicom.dcmread(PCIR / "DICOMDIR")
    assert dirfile.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    dirfile.save_as(series / "DIRFILE", enforce_file_format=True)
    slices = len(list(MR.glob("*.dcm")))
    data_dir = tmp_path / "data"

    result = run_cli("import", str(media), "--data-dir", str(data_dir))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert f"skipped: DICOM/ST00001/SE00001/DIRFILE: {MEDIA_INDEX_OBJECT}" in result.stdout, (
        result.stdout
    )
    assert f"imported {slices}," in result.stdout and "quarantined 0," in result.stdout
    assert "media indexes skipped 1" in result.stdout
    db = sqlite_utils.Database(data_dir / "radiant.db")
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == slices
    (detail,) = db.execute("SELECT detail FROM audit_log WHERE action = 'media.import'").fetchone()
    db.conn.close()
    assert json.loads(detail)["media_indexes"] == 1
