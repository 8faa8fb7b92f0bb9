"""The one ingest path on real files and a real SQLite database: stored, duplicate,
quarantined; demographics conflicts; atomicity; stability; crash recovery."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlite_utils
from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import UID

from appliance.audit import service as audit_service
from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.dicom.ingest import _LOCKS, Outcome
from appliance.dicom.reading import InstanceInfo, Rejected, read_instance
from appliance.dicom.recovery import UNINDEXED, recover
from appliance.dicom.scan import scan_instance
from appliance.storage.service import instance_key
from appliance.studies.stability import mark_stable
from tests.dicom_files import DATA, instance_files

ACTOR = Actor.system("test")


@pytest.fixture
def ctx(settings: Settings) -> AppContext:
    return prepare(settings)


@pytest.fixture
def db(ctx: AppContext) -> sqlite_utils.Database:
    return ctx.pool.get()


def _count(db: sqlite_utils.Database, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _variant(path: Path, **changes: str) -> bytes:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_series_is_stored_and_indexed(ctx: AppContext, db: sqlite_utils.Database) -> None:
    files = instance_files("mr_siemens_t1_sag_brain_35sl")
    results = [ctx.ingestor.ingest(f.read_bytes(), source="usb", actor=ACTOR) for f in files]
    assert {r.outcome for r in results} == {Outcome.STORED}
    assert (_count(db, "patients"), _count(db, "studies"), _count(db, "series")) == (1, 1, 1)
    assert _count(db, "instances") == len(files)
    study = db.execute(
        "SELECT instance_count, series_count, status, modalities FROM studies"
    ).fetchone()
    assert study == (len(files), 1, "receiving", "MR")
    for path, result in zip(files, results, strict=True):
        key, sha, size = db.execute(
            "SELECT storage_key, sha256, size FROM instances WHERE id = ?", (result.instance_id,)
        ).fetchone()
        data = path.read_bytes()
        assert sha == hashlib.sha256(data).hexdigest() and size == len(data)
        assert ctx.store.path(key).read_bytes() == data  # stored as received
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log")]
    assert actions.count("dicom.store") == len(files)
    assert audit_service.verify(db).ok


def test_duplicates_are_ignored_and_counted(ctx: AppContext, db: sqlite_utils.Database) -> None:
    path = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    first = ctx.ingestor.ingest(path.read_bytes(), source="network", actor=ACTOR)
    again = ctx.ingestor.ingest(path.read_bytes(), source="network", actor=ACTOR)
    changed = ctx.ingestor.ingest(
        _variant(path, SeriesDescription="other"), source="network", actor=ACTOR
    )
    assert (first.outcome, again.outcome, changed.outcome) == (
        Outcome.STORED,
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
    )
    assert _count(db, "instances") == 1
    assert db.execute("SELECT duplicates FROM instances").fetchone()[0] == 2
    key = db.execute("SELECT storage_key FROM instances").fetchone()[0]
    assert ctx.store.path(key).read_bytes() == path.read_bytes()


def test_overwrite_mode_replaces_the_file_and_the_row(settings: Settings, tmp_path: Path) -> None:
    ctx = prepare(settings.model_copy(update={"dicom_overwrite": True}))
    db = ctx.pool.get()
    path = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    ctx.ingestor.ingest(path.read_bytes(), source="network", actor=ACTOR)
    old_key = db.execute("SELECT storage_key FROM instances").fetchone()[0]
    newer = _variant(path, InstanceNumber="999")
    result = ctx.ingestor.ingest(newer, source="network", actor=ACTOR)
    assert result.outcome is Outcome.STORED
    key, number, sha = db.execute(
        "SELECT storage_key, instance_number, sha256 FROM instances"
    ).fetchone()
    assert number == 999 and sha == hashlib.sha256(newer).hexdigest()
    assert key != old_key and not ctx.store.exists(old_key)
    assert ctx.store.path(key).read_bytes() == newer


def test_malformed_files_are_quarantined_byte_for_byte(
    ctx: AppContext, db: sqlite_utils.Database
) -> None:
    # all but the 12-bit lossy JPEG, which GDCM decodes (tests/unit/test_jpeg12_fallback.py)
    bad = sorted(
        p
        for p in (DATA / "malformed").iterdir()
        if p.suffix != ".txt" and p.name != "JPEG-lossy.dcm"
    )
    for path in bad:
        result = ctx.ingestor.ingest(
            path.read_bytes(), source="upload", actor=ACTOR, origin=path.name
        )
        assert result.outcome is Outcome.QUARANTINED, path.name
        assert result.reason
    rows = db.execute("SELECT reason, storage_path, sha256, origin FROM quarantine").fetchall()
    assert len(rows) == len(bad)
    for reason, stored, sha, origin in rows:
        original = (DATA / "malformed" / origin).read_bytes()
        assert (ctx.settings.quarantine_dir / stored).read_bytes() == original
        assert sha == hashlib.sha256(original).hexdigest() and reason
    assert _count(db, "instances") == 0 and _count(db, "studies") == 0
    assert _count(db, "patients") == 0
    assert [r[0] for r in db.execute("SELECT DISTINCT action FROM audit_log")] == [
        "dicom.quarantine"
    ]


def test_unknown_mrn_creates_the_patient_and_known_mrn_links(
    ctx: AppContext, db: sqlite_utils.Database
) -> None:
    path = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    ds = pydicom.dcmread(path)
    ctx.ingestor.ingest(path.read_bytes(), source="usb", actor=ACTOR)
    mrn, last, source = db.execute("SELECT mrn, last_name, source FROM patients").fetchone()
    assert mrn == str(ds.PatientID) and source == "dicom"
    assert last == (ds.PatientName.family_name or None)
    # a second study for the same MRN links to the same patient
    other = _variant(
        path,
        StudyInstanceUID="1.2.826.0.1.3680043.8.498.1",
        SeriesInstanceUID="1.2.826.0.1.3680043.8.498.2",
        SOPInstanceUID="1.2.826.0.1.3680043.8.498.3",
    )
    ctx.ingestor.ingest(other, source="usb", actor=ACTOR)
    assert _count(db, "patients") == 1 and _count(db, "studies") == 2


def test_conflicting_demographics_are_kept_and_flagged(
    ctx: AppContext, db: sqlite_utils.Database
) -> None:
    path = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    ctx.ingestor.ingest(path.read_bytes(), source="usb", actor=ACTOR)
    before = db.execute("SELECT first_name, last_name, birth_date, sex FROM patients").fetchone()
    other = _variant(
        path,
        PatientName="Quux^Zelda",
        PatientSex="F",
        StudyInstanceUID="1.2.826.0.1.3680043.8.498.11",
        SeriesInstanceUID="1.2.826.0.1.3680043.8.498.12",
        SOPInstanceUID="1.2.826.0.1.3680043.8.498.13",
    )
    assert ctx.ingestor.ingest(other, source="usb", actor=ACTOR).outcome is Outcome.STORED
    after = db.execute(
        "SELECT first_name, last_name, birth_date, sex, demographics_conflict FROM patients"
    ).fetchone()
    assert after[:4] == before and after[4] == 1  # not overwritten, flagged
    kept = db.execute(
        "SELECT first_name, last_name, sex, study_uid FROM patient_demographics"
    ).fetchall()
    assert kept == [("Zelda", "Quux", "F", "1.2.826.0.1.3680043.8.498.11")]


def test_a_study_uid_of_another_patient_is_quarantined(
    ctx: AppContext, db: sqlite_utils.Database
) -> None:
    files = instance_files("mr_siemens_t1_sag_brain_35sl")
    ctx.ingestor.ingest(files[0].read_bytes(), source="usb", actor=ACTOR)
    hijack = _variant(files[1], PatientID="SOMEONE-ELSE")
    result = ctx.ingestor.ingest(hijack, source="usb", actor=ACTOR)
    assert result.outcome is Outcome.QUARANTINED
    assert "different PatientID" in (result.reason or "")
    assert _count(db, "instances") == 1 and _count(db, "patients") == 1
    assert list(ctx.store.iter_keys("dicom/")) == [
        db.execute("SELECT storage_key FROM instances").fetchone()[0]
    ]


def test_a_failed_index_commit_leaves_no_file(
    ctx: AppContext, db: sqlite_utils.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> int:
        raise OSError("disk error")

    monkeypatch.setattr(audit_service, "record", broken)
    path = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    with pytest.raises(OSError):
        ctx.ingestor.ingest(path.read_bytes(), source="usb", actor=ACTOR)
    assert _count(db, "instances") == 0 and _count(db, "studies") == 0
    assert list(ctx.store.iter_keys("dicom/")) == []


def test_stability_after_a_quiet_period(ctx: AppContext, db: sqlite_utils.Database) -> None:
    for path in instance_files("mr_ge_fmri_2series_4d")[:4]:
        ctx.ingestor.ingest(path.read_bytes(), source="network", actor=ACTOR)
    assert mark_stable(db, stable_age_s=3600) == []
    db.execute("UPDATE series SET last_instance_at = '2000-01-01T00:00:00.000000Z'")
    db.execute("UPDATE studies SET last_instance_at = '2000-01-01T00:00:00.000000Z'")
    events = mark_stable(db, stable_age_s=30)
    kinds = sorted(e.kind for e in events)
    assert kinds.count("study") == _count(db, "studies")
    assert kinds.count("series") == _count(db, "series")
    assert {r[0] for r in db.execute("SELECT status FROM studies")} == {"stable"}
    assert mark_stable(db, stable_age_s=30) == []
    # a new instance makes its series and study receive again
    late = _variant(
        instance_files("mr_ge_fmri_2series_4d")[0], SOPInstanceUID="1.2.826.0.1.3680043.8.498.99"
    )
    ctx.ingestor.ingest(late, source="network", actor=ACTOR)
    assert "receiving" in {r[0] for r in db.execute("SELECT status FROM studies")}


def test_a_study_waits_for_all_its_series(ctx: AppContext, db: sqlite_utils.Database) -> None:
    files = instance_files("mr_ge_fmri_2series_4d")
    series = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID: f for f in files}
    assert len(series) == 2
    for path in series.values():
        ctx.ingestor.ingest(path.read_bytes(), source="network", actor=ACTOR)
    old = "2000-01-01T00:00:00.000000Z"
    first_uid = sorted(series)[0]
    db.execute("UPDATE series SET last_instance_at = ? WHERE series_uid = ?", (old, first_uid))
    db.execute("UPDATE studies SET last_instance_at = ?", (old,))
    events = mark_stable(db, stable_age_s=30)
    assert [e.kind for e in events] == ["series"]


def test_recovery_removes_partials_and_quarantines_unindexed_files(
    ctx: AppContext, db: sqlite_utils.Database
) -> None:
    good = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    ctx.ingestor.ingest(good.read_bytes(), source="usb", actor=ACTOR)
    orphan_bytes = instance_files("mr_siemens_t1_sag_brain_35sl")[1].read_bytes()
    ctx.store.put("dicom/1.2.3/4.5.6/7.8.9.dcm", orphan_bytes)  # written, never indexed
    partial = ctx.store.root / "dicom" / "1.2.3" / "4.5.6" / ".tmp-crashed"
    partial.write_bytes(b"half")
    report = recover(ctx)
    assert (report.partials_removed, report.orphans_quarantined) == (1, 1)
    assert not partial.exists() and not ctx.store.exists("dicom/1.2.3/4.5.6/7.8.9.dcm")
    reason, stored = db.execute("SELECT reason, storage_path FROM quarantine").fetchone()
    assert reason == UNINDEXED
    assert (ctx.settings.quarantine_dir / stored).read_bytes() == orphan_bytes
    assert _count(db, "instances") == 1
    assert recover(ctx) == type(report)(0, 0)


# -- the fast scan (appliance.dicom.scan) against the full reader --------------------------------


def _full(data: bytes) -> InstanceInfo | None:
    try:
        return read_instance(data)[1]
    except Rejected:
        return None


def test_the_fast_scan_agrees_with_the_full_reader_on_every_test_file() -> None:
    answered = 0
    for path in sorted(p for p in DATA.rglob("*") if p.is_file()):
        data = path.read_bytes()
        fast = scan_instance(data)
        if fast is not None:
            answered += 1
            assert fast == _full(data), path
    # the plain uncompressed sets are answered by the fast path, not left to the full reader
    plain = instance_files("mr_siemens_t1_sag_brain_35sl") + instance_files(
        "ct_ge_head_tilt18_varspacing"
    )
    assert all(scan_instance(p.read_bytes()) is not None for p in plain)
    assert answered >= len(plain)


def _edited(path: Path, *, implicit: bool = False, **changes: Any) -> bytes:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if isinstance(value, bytes):
            tag = keyword_dict[keyword]
            ds[tag] = RawDataElement(Tag(tag), dictionary_VR(tag), len(value), value, 0,
                                     implicit, True)  # fmt: skip
        elif value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
    if implicit:
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return out.getvalue()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"implicit": True},
        {"PatientName": b"Dupr\xe9^Ren\xe9", "SpecificCharacterSet": "ISO_IR 100"},
        {"PatientName": "Yamada^Tarou=^=^"},
        {"PatientName": "  Doe ^ John ^^ "},
        {"PatientName": ""},
        {"PatientID": b"A\\B"},
        {"PatientSex": "X"},
        {"PatientBirthDate": "19991399"},
        {"InstanceNumber": b"1.0 "},
        {"InstanceNumber": b" 12"},
        {"InstanceNumber": b"1A"},  # not a number: the full reader quarantines
        {"SliceThickness": b"1e-1"},
        {"PixelSpacing": b"0.5\\\\"},
        {"PixelSpacing": b"0.5"},
        {"ImagePositionPatient": b" 1\\2 \\3"},
        {"SeriesNumber": b"1\\2"},
        {"SOPInstanceUID": b"1.2.3.abc"},  # invalid UID: quarantined
        {"SOPInstanceUID": None},  # missing: quarantined
        {"StudyDescription": b"x\x00"},
        {"AccessionNumber": b"\x1b$B"},
        {"Rows": 4096},  # pixel data shorter than the attributes say: quarantined
    ],
    ids=lambda c: ",".join(f"{k}" for k in c) or "unchanged",
)
def test_the_fast_scan_never_accepts_what_the_full_reader_refuses(changes: dict[str, Any]) -> None:
    source = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    data = _edited(source, **changes)
    fast = scan_instance(data)
    assert fast is None or fast == _full(data)
    if not changes or changes == {"implicit": True}:
        assert fast is not None and fast == _full(data)


@pytest.mark.parametrize("cut", [200, 1000, 5000, -3, -1000])
def test_the_fast_scan_leaves_truncated_data_to_the_full_reader(cut: int) -> None:
    data = instance_files("mr_siemens_t1_sag_brain_35sl")[0].read_bytes()
    assert scan_instance(data[:cut]) is None


# -- ObjectStore.create: the instance write used by ingest ---------------------------------------


def test_create_writes_once_and_refuses_an_existing_name(ctx: AppContext) -> None:
    key = "dicom/1.2/3.4/5.6.dcm"
    assert ctx.store.create(key, b"first") is True
    assert ctx.store.create(key, b"second") is False
    assert ctx.store.path(key).read_bytes() == b"first"
    assert ctx.store.hash_of(key).sha256 == hashlib.sha256(b"first").hexdigest()


def test_a_failed_file_write_leaves_no_file_and_no_row(
    ctx: AppContext, db: sqlite_utils.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("appliance.storage.service.os.write", full_disk)
    source = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    with pytest.raises(OSError, match="No space"):
        ctx.ingestor.ingest(source.read_bytes(), source="usb", actor=ACTOR)
    assert _count(db, "instances") == 0
    assert [p for p in ctx.store.root.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    result = ctx.ingestor.ingest(source.read_bytes(), source="usb", actor=ACTOR)
    assert result.outcome is Outcome.STORED


def test_an_unindexed_file_in_the_way_is_replaced_atomically(
    ctx: AppContext, db: sqlite_utils.Database
) -> None:
    source = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    info = scan_instance(source.read_bytes())
    assert info is not None
    key = instance_key(info.study_uid, info.series_uid, info.sop_instance_uid)
    ctx.store.put(key, b"left over by a crash")
    result = ctx.ingestor.ingest(source.read_bytes(), source="usb", actor=ACTOR)
    assert result.outcome is Outcome.STORED
    assert ctx.store.path(key).read_bytes() == source.read_bytes()
    stored_sha = db.execute("SELECT sha256 FROM instances").fetchone()[0]
    assert stored_sha == hashlib.sha256(source.read_bytes()).hexdigest()


def _in_distinct_stripes(paths: list[Path], count: int) -> list[Path]:
    """``count`` of ``paths`` whose SOP Instance UIDs take different per-UID locks of the
    ingestor. Its lock stripe is ``hash(uid)``, and str hashes change from process to process:
    two instances of one stripe wait for each other before queuing, so a test that needs them
    queued together must pick instances of different stripes."""
    chosen: list[Path] = []
    stripes: set[int] = set()
    for path in paths:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        stripe = hash(uid) % len(_LOCKS)
        if stripe not in stripes:
            chosen.append(path)
            stripes.add(stripe)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"fewer than {count} instances in distinct lock stripes")


def test_parallel_instances_share_one_commit_and_no_caller_returns_before_it(
    ctx: AppContext, settings: Settings
) -> None:
    """Group commit: two instances that arrive while another commit holds the write lock are
    indexed in one transaction, and neither caller (the receiver acknowledges when it
    returns) gets its result before that commit: a second connection sees no row until then."""
    files = _in_distinct_stripes(instance_files("mr_siemens_t1_sag_brain_35sl"), 2)
    ingestor = ctx.ingestor
    results: dict[Path, Any] = {}

    def send(path: Path) -> None:
        result = ingestor.ingest(path.read_bytes(), source="network", actor=ACTOR)
        # what a peer could see at the moment of its acknowledgement
        with sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True) as other:
            visible = other.execute(
                "SELECT COUNT(*) FROM instances WHERE id = ?", (result.instance_id,)
            ).fetchone()[0]
        results[path] = (result, visible)

    before = ingestor.commits
    threads = [threading.Thread(target=send, args=(f,)) for f in files]
    with ingestor._write_lock:  # stands for a commit of other instances in progress
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while ingestor.pending() < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert ingestor.pending() == 2
        assert results == {}  # prepared, files written, but nobody acknowledged yet
        with sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True) as other:
            assert other.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 0
    for thread in threads:
        thread.join(30)
    assert ingestor.commits == before + 1  # one WAL commit for both
    assert {r.outcome for r, _ in results.values()} == {Outcome.STORED}
    assert {r.commit for r, _ in results.values()} == {before + 1}
    assert [v for _, v in results.values()] == [1, 1]  # each row durable when its caller returns


def test_a_caller_returns_when_its_commit_ends_not_when_the_next_one_does(
    ctx: AppContext, settings: Settings
) -> None:
    """A caller whose instance another caller committed returns as soon as that commit has
    ended, even while the write lock is already held for the next batch (here by the test
    throughout): acknowledgements on parallel associations do not wait one commit more."""
    path = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    ingestor = ctx.ingestor
    results: list[Any] = []
    sender = threading.Thread(
        target=lambda: results.append(
            ingestor.ingest(path.read_bytes(), source="network", actor=ACTOR)
        )
    )
    with ingestor._write_lock:  # the next batch's commit, in progress until the end
        sender.start()
        deadline = time.monotonic() + 30
        while ingestor.pending() < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        with ingestor._turn:  # another caller takes the queued job and commits it
            batch, ingestor._queue = ingestor._queue, []
        assert len(batch) == 1 and results == []
        ingestor._commit_batch(batch)
        sender.join(10)
        assert not sender.is_alive()  # returned while the write lock is still held
        assert [r.outcome for r in results] == [Outcome.STORED]
        with sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True) as other:
            assert (
                other.execute(
                    "SELECT COUNT(*) FROM instances WHERE id = ?", (results[0].instance_id,)
                ).fetchone()[0]
                == 1
            )


def test_batches_commit_on_one_writer_connection_reopened_after_close_all(
    ctx: AppContext, db: sqlite_utils.Database
) -> None:
    """Every batch commits on the ingestor's one writer connection, whichever caller's thread
    leads it (each thread has its own pool connection); after the pool's ``close_all`` (a
    command closing its context) the next instance gets a fresh writer, not a closed one."""
    first, second, third = instance_files("mr_siemens_t1_sag_brain_35sl")[:3]
    ingestor = ctx.ingestor
    ingestor.ingest(first.read_bytes(), source="usb", actor=ACTOR)
    writer = ingestor._writer
    worker = threading.Thread(
        target=lambda: ingestor.ingest(second.read_bytes(), source="usb", actor=ACTOR)
    )
    worker.start()
    worker.join(30)
    assert writer is not None and ingestor._writer is writer
    ctx.pool.close_all()
    result = ingestor.ingest(third.read_bytes(), source="usb", actor=ACTOR)
    assert result.outcome is Outcome.STORED
    assert ingestor._writer is not writer
    assert _count(ctx.pool.get(), "instances") == 3


def test_a_refused_instance_in_a_group_commit_leaves_the_others_stored(
    ctx: AppContext, db: sqlite_utils.Database
) -> None:
    """One instance refused while indexing (its study belongs to another patient) is rolled
    back alone: the others of the same commit are stored, the refused one quarantined."""
    first, *others = instance_files("mr_siemens_t1_sag_brain_35sl")
    files = [first, *_in_distinct_stripes(others, 3)]
    ctx.ingestor.ingest(files[0].read_bytes(), source="usb", actor=ACTOR)  # the study exists
    # the middle one claims that study for another patient: refused, whatever its place
    payloads = [files[1].read_bytes(), _variant(files[2], PatientID="SOMEONE-ELSE"),
                files[3].read_bytes()]  # fmt: skip
    outcomes: list[Any] = [None] * 3

    def send(index: int) -> None:
        outcomes[index] = ctx.ingestor.ingest(payloads[index], source="usb", actor=ACTOR)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    with ctx.ingestor._write_lock:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while ctx.ingestor.pending() < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert ctx.ingestor.pending() == 3
    for thread in threads:
        thread.join(30)
    assert [o.outcome for o in outcomes] == [Outcome.STORED, Outcome.QUARANTINED, Outcome.STORED]
    assert outcomes[0].commit == outcomes[2].commit
    assert _count(db, "instances") == 3  # the one stored before, and the two good ones
    assert _count(db, "quarantine") == 1
    assert len(list(ctx.store.root.rglob("*.dcm"))) == 3  # no file left for the refused one
