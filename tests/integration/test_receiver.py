"""The DICOM receiver of a real ``radiant serve`` process against real peers: dcmtk's storescu,
echoscu, findscu, getscu, movescu and storescp, and pynetdicom where the test must see every
status. Servers run on 127.0.0.1 on free ports and are always stopped.

How files are compared: getscu and storescp run bit-preserving (``+B``): they write the dataset
exactly as it arrived but write File Meta Information of their own (their implementation UID,
source AE). So "byte-identical" is checked on the SHA-256 of the dataset after the File Meta.
The retrieve test loads the appliance with a bit-preserving sender (pynetdicom sending each file's
dataset bytes unchanged), because dcmtk's storescu re-encodes some datasets while sending (it
drops retired group length elements and rewrites sequence lengths of the enhanced MR files):
bytes it never sent cannot come back.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from appliance.dicom.pynetdicom_compat import SenderTakesEveryMessage
from tests.dicom_files import dicom_sets
from tests.servers import RADIANT, Served, clean_env, free_port, running

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
SETS = dicom_sets()
UNCOMPRESSED = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]
AE_TITLE = "RADIANT"
# dcmtk's default calling AE titles, as peers on 127.0.0.1 (their port is never used)
LOCAL_PEERS = "FINDSCU@127.0.0.1:104,GETSCU@127.0.0.1:104,MOVESCU@127.0.0.1:104"
# getscu option that makes it propose (first) each transfer syntax in C-GET's storage contexts.
# getscu 3.6.7 proposes Explicit VR LE even with +xi, so it cannot take Implicit VR LE files:
# the receiver then fails those sub-operations instead of transcoding (checked below).
IMPLICIT_LE = "1.2.840.10008.1.2"
GETSCU_PREFERENCE = {
    IMPLICIT_LE: "+xi",
    "1.2.840.10008.1.2.1": "+xe",
    "1.2.840.10008.1.2.2": "+xb",
    "1.2.840.10008.1.2.4.70": "+xs",
    "1.2.840.10008.1.2.4.80": "+xt",
    "1.2.840.10008.1.2.4.90": "+xv",
    "1.2.840.10008.1.2.5": "+xr",
}


# -- the test data --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    path: Path
    set_name: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    syntax: str
    dataset_sha256: str  # of the bytes after the File Meta Information


def _instance_files(set_name: str) -> list[Path]:
    """Part 10 files of a set (by the DICM magic); DICOMDIR is a media index, not an instance."""
    found = []
    for path in sorted((DATA / set_name).rglob("*")):
        if path.is_file() and path.name != "DICOMDIR":
            with path.open("rb") as handle:
                if handle.read(132)[128:] == b"DICM":
                    found.append(path)
    return found


def _dataset_sha256(path: Path) -> str:
    _, offset = split_dataset(path)
    return hashlib.sha256(path.read_bytes()[offset:]).hexdigest()


def _read(path: Path, set_name: str) -> Instance:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return Instance(
        path,
        set_name,
        str(ds.get("PatientID", "")),
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
        str(ds.SOPClassUID),
        str(ds.file_meta.TransferSyntaxUID),
        _dataset_sha256(path),
    )


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[Instance]]:
    return {name: [_read(p, name) for p in _instance_files(name)] for name in SETS}


# -- the appliance and the peers ------------------------------------------------------------


@dataclass
class Appliance:
    root: Path
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    served: Served | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(
            **{
                "RADIANT_DICOM_HOST": "127.0.0.1",
                "RADIANT_DICOM_PORT": str(self.dicom_port),
                "RADIANT_DICOM_AE_TITLE": AE_TITLE,
                "RADIANT_MIN_FREE_GB": "0",  # test machines may have little free disk
                "TCP_NODELAY": "1",
                **extra,
                # query/retrieve is for configured peers: dcmtk's tools on this machine
                "RADIANT_DICOM_PEERS": ",".join(
                    p for p in (extra.get("RADIANT_DICOM_PEERS", ""), LOCAL_PEERS) if p
                ),
            }
        )

    @contextmanager
    def serve(self, **extra: str) -> Iterator[Served]:
        args = [*RADIANT, "serve", "--port", str(self.http_port), "--data-dir", str(self.data_dir)]
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        with running(args, self.env(**extra), self.root, url) as served:
            self.served = served
            allowed = extra.get("RADIANT_DICOM_ALLOWED_AETS", "").split(",")
            _wait_echo(self.dicom_port, allowed[0] or "ECHOSCU")
            yield served

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.data_dir / 'radiant.db'}?mode=ro", uri=True)

    def count(self, table: str) -> int:
        with self.db() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def object_files(self) -> list[Path]:
        root = self.data_dir / "objects" / "dicom"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _wait_echo(port: int, calling_ae: str = "ECHOSCU") -> None:
    """The HTTP side answers first; poll C-ECHO until the receiver answers too."""
    for _ in range(300):
        ae = AE(ae_title=calling_ae)
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            if status.get("Status") == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"the receiver on port {port} never answered C-ECHO")


def _dcmtk(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        cwd=cwd,
        timeout=300,
        check=False,
    )


def _storescu_config(path: Path, files: list[Path]) -> list[str]:
    """A storescu profile proposing, for each SOP class sent, the file's own transfer syntax
    and the uncompressed ones, one per presentation context (storescu's default proposes only
    uncompressed syntaxes and would fail every compressed file)."""
    pairs: set[tuple[str, str]] = set()
    for file in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(file, force=True, stop_before_pixels=True)
            except Exception:
                continue
        meta = getattr(ds, "file_meta", None)
        sop_class = str(ds.get("SOPClassUID", "") or "")
        syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
        if sop_class:
            pairs.update((sop_class, s) for s in [syntax, *UNCOMPRESSED] if s)
    syntaxes = sorted({s for _, s in pairs})
    lines = ["[[TransferSyntaxes]]"]
    for number, syntax in enumerate(syntaxes):
        lines += [f"[TS{number}]", f"TransferSyntax1 = {syntax}"]
    lines += ["[[PresentationContexts]]", "[Contexts]"]
    for number, (sop_class, syntax) in enumerate(sorted(pairs), start=1):
        lines.append(f"PresentationContext{number} = {sop_class}\\TS{syntaxes.index(syntax)}")
    lines += ["[[Profiles]]", "[Radiant]", "PresentationContexts = Contexts"]
    path.write_text("\n".join(lines) + "\n")
    return ["-xf", str(path), "Radiant"]


def _storescu(
    appliance: Appliance, inputs: list[Path], *extra: str, scan: bool = False
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Send ``inputs`` in one association (``-nh``: go on after a failed file); returns the
    process and storescu's verdict per file it looked at."""
    files = [p for i in inputs for p in (sorted(i.rglob("*")) if i.is_dir() else [i])]
    profile = _storescu_config(appliance.root / f"storescu-{time.monotonic_ns()}.cfg", files)
    scan_args = ["--scan-directories", "--recurse"] if scan else []
    result = _dcmtk(
        "storescu",
        "-v",
        "-nh",
        *profile,
        *scan_args,
        *extra,
        "-aec",
        AE_TITLE,
        "127.0.0.1",
        str(appliance.dicom_port),
        *map(str, inputs),
    )
    return result, _storescu_verdicts(result.stdout + result.stderr)


def _storescu_verdicts(output: str) -> dict[str, str]:
    """storescu -v output to {file: "Success" | "Error: ..." | "not sent: ..."}."""
    verdicts: dict[str, str] = {}
    current = None
    for line in output.splitlines():
        if m := re.match(r"I: Sending file: (.+)$", line):
            current = m.group(1)
        elif m := re.match(r"I: Received Store Response \((.+)\)$", line):
            assert current is not None
            verdicts[current] = m.group(1)
        elif m := re.match(
            r"E: (Bad DICOM file|No SOP Class or Instance UID in file): "
            r"(.+?)(: .*)?$",
            line,
        ):
            verdicts[m.group(2)] = f"not sent: {m.group(1)}"
    return verdicts


@contextmanager
def _storescp(out_dir: Path, ae_title: str) -> Iterator[int]:
    """dcmtk storescp accepting every transfer syntax, writing what it gets bit for bit."""
    port = free_port()
    out_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["storescp", "+xa", "+B", "-aet", ae_title, "-od", str(out_dir), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    try:
        _wait_echo_any(port)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_echo_any(port: int) -> None:
    for _ in range(100):
        if _dcmtk("echoscu", "127.0.0.1", str(port)).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"storescp on {port} never answered")


def _received(directory: Path) -> dict[str, str]:
    """SOP Instance UID -> SHA-256 of the dataset, for each file a peer wrote."""
    found = {}
    for path in directory.iterdir():
        meta, _ = split_dataset(path)
        found[str(meta.MediaStorageSOPInstanceUID)] = _dataset_sha256(path)
    return found


def _send_raw(
    port: int,
    files: list[Path],
    acked: list[str] | None = None,
    stop: threading.Event | None = None,
    on_ack: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """pynetdicom as a bit-preserving sender: each file's dataset bytes go out unchanged (a
    context per SOP class and exact transfer syntax); returns the status of each instance."""
    metas = {}
    for path in files:
        meta, _ = split_dataset(path)
        metas[path] = (
            str(meta.MediaStorageSOPClassUID),
            str(meta.TransferSyntaxUID),
            str(meta.MediaStorageSOPInstanceUID),
        )
    ae = AE(ae_title="RAWSCU")
    for sop_class, syntax in sorted({(c, s) for c, s, _ in metas.values()}):
        ae.add_requested_context(sop_class, [syntax])
    statuses: dict[str, int] = {}
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    if not assoc.is_established:
        return statuses
    try:
        for path in files:
            if stop is not None and stop.is_set():
                break
            try:
                status = assoc.send_c_store(path)
            except Exception:
                break
            code = status.get("Status")
            if code is None:
                break  # no response: the association is gone
            statuses[metas[path][2]] = int(code)
            if acked is not None and int(code) == 0:
                acked.append(metas[path][2])
            if on_ack is not None and int(code) == 0:
                on_ack(metas[path][2])
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


@pytest.fixture
def raw_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


# -- 1 and 2: every set over storescu, then echo and find ------------------------------------


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory, corpus: dict[str, list[Instance]]
) -> Iterator[tuple[Appliance, dict[str, str]]]:
    appliance = Appliance(tmp_path_factory.mktemp("loaded"))
    with appliance.serve():
        result, verdicts = _storescu(appliance, [DATA / s for s in SETS], scan=True)
        assert result.returncode == 0, result.stderr[-2000:]
        yield appliance, verdicts
    assert appliance.served is not None
    output = appliance.served.output
    # Logs are JSON lines without PHI: no patient name or id of the sets appears in them.
    for secret in ("crlab", "stc_test", "QMNx85rKkkg", "ROGERS_20180526", "Covid0000"):
        assert secret not in output


def test_storescu_sends_every_set_and_all_is_indexed(
    loaded: tuple[Appliance, dict[str, str]], corpus: dict[str, list[Instance]]
) -> None:
    appliance, verdicts = loaded
    instances = [i for items in corpus.values() for i in items]
    by_file = {str(i.path): i for i in instances}
    # storescu scanned every file: each instance answered Success; DICOMDIR and the text notes
    # were not sent ("No SOP Class or Instance UID" and "Bad DICOM file").
    assert {f: v for f, v in verdicts.items() if f in by_file} == {f: "Success" for f in by_file}
    not_sent = {Path(f).name for f, v in verdicts.items() if f not in by_file}
    assert "DICOMDIR" in not_sent and all(n == "DICOMDIR" or n.endswith(".txt") for n in not_sent)
    assert all(v.startswith("not sent") for f, v in verdicts.items() if f not in by_file)

    with appliance.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == len(
            {i.sop_uid for i in instances}
        )
        for set_name, items in corpus.items():
            marks = ",".join("?" for _ in items)
            row = conn.execute(
                "SELECT COUNT(DISTINCT i.id), COUNT(DISTINCT se.id), COUNT(DISTINCT st.id),"
                " COUNT(DISTINCT p.id) FROM instances i JOIN series se ON se.id = i.series_id"
                " JOIN studies st ON st.id = se.study_id JOIN patients p ON p.id = st.patient_id"
                f" WHERE i.sop_instance_uid IN ({marks})",
                [i.sop_uid for i in items],
            ).fetchone()
            expected = (
                len({i.sop_uid for i in items}),
                len({i.series_uid for i in items}),
                len({i.study_uid for i in items}),
                len({i.patient_id for i in items}),
            )
            assert row == expected, set_name
        assert conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0

    # The same again: success for every instance, no new rows, each counted as a duplicate.
    result, again = _storescu(appliance, [DATA / s for s in SETS], scan=True)
    assert result.returncode == 0
    assert {f: v for f, v in again.items() if f in by_file} == {f: "Success" for f in by_file}
    with appliance.db() as conn:
        assert conn.execute("SELECT COUNT(*), SUM(duplicates) FROM instances").fetchone() == (
            len(instances),
            len(instances),
        )
        assert conn.execute("SELECT MAX(duplicates) FROM instances").fetchone()[0] == 1


def _findscu(appliance: Appliance, out: Path, *keys: str) -> list[Dataset]:
    """findscu, Study Root (-S), responses extracted to files and read back with pydicom."""
    out.mkdir(parents=True)
    result = _dcmtk(
        "findscu",
        "-S",
        "-X",
        "-od",
        str(out),
        "-aec",
        AE_TITLE,
        *[a for k in keys for a in ("-k", k)],
        "127.0.0.1",
        str(appliance.dicom_port),
    )
    assert result.returncode == 0, result.stderr
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_echoscu_and_findscu_at_each_level(
    loaded: tuple[Appliance, dict[str, str]],
    corpus: dict[str, list[Instance]],
    tmp_path: Path,
) -> None:
    appliance, _ = loaded
    echo = _dcmtk("echoscu", "-v", "-aec", AE_TITLE, "127.0.0.1", str(appliance.dicom_port))
    assert echo.returncode == 0 and "Received Echo Response (Success)" in echo.stdout + echo.stderr

    t1 = corpus["mr_siemens_t1_sag_brain_35sl"][0]
    matrix = corpus["mr_siemens_transfer_syntax_matrix"][0]
    by_id = _findscu(
        appliance,
        tmp_path / "by-id",
        "QueryRetrieveLevel=STUDY",
        f"PatientID={t1.patient_id}",
        "StudyInstanceUID",
        "PatientName",
        "StudyDate",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    )
    assert {str(d.StudyInstanceUID) for d in by_id} == {t1.study_uid, matrix.study_uid}
    assert {str(d.PatientID) for d in by_id} == {t1.patient_id}
    counts = {str(d.StudyInstanceUID): int(d.NumberOfStudyRelatedInstances) for d in by_id}
    assert counts == {t1.study_uid: 35, matrix.study_uid: 9}

    # StudyDate range: the expected studies computed from the files themselves
    dates: dict[str, str] = {}
    for items in corpus.values():
        for item in items:
            dates[item.study_uid] = str(
                pydicom.dcmread(item.path, stop_before_pixels=True).get("StudyDate", "")
            )
    low, high = "20180101", "20211231"
    in_range = {uid for uid, d in dates.items() if d and low <= d <= high}
    assert len(in_range) >= 3
    ranged = _findscu(
        appliance,
        tmp_path / "by-date",
        "QueryRetrieveLevel=STUDY",
        f"StudyDate={low}-{high}",
        "StudyInstanceUID",
    )
    assert {str(d.StudyInstanceUID) for d in ranged} == in_range

    fmri = corpus["mr_ge_fmri_2series_4d"]
    series = _findscu(
        appliance,
        tmp_path / "series",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={fmri[0].study_uid}",
        "SeriesInstanceUID",
        "Modality",
        "NumberOfSeriesRelatedInstances",
    )
    expected_series: dict[str, int] = defaultdict(int)
    for item in fmri:
        expected_series[item.series_uid] += 1
    assert {str(d.SeriesInstanceUID): int(d.NumberOfSeriesRelatedInstances) for d in series} == (
        dict(expected_series)
    )
    assert {str(d.Modality) for d in series} == {"MR"}

    images = _findscu(
        appliance,
        tmp_path / "images",
        "QueryRetrieveLevel=IMAGE",
        f"SeriesInstanceUID={matrix.series_uid}",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    )
    assert {str(d.SOPInstanceUID) for d in images} == {
        i.sop_uid for i in corpus["mr_siemens_transfer_syntax_matrix"]
    }
    with appliance.db() as conn:
        audited = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'dicom.find' ORDER BY id"
        ).fetchall()
    assert [d[0] for d in audited[-3:]] == [
        f'{{"level":"STUDY","matches":{len(in_range)}}}',
        f'{{"level":"SERIES","matches":{len(expected_series)}}}',
        '{"level":"IMAGE","matches":9}',
    ]


# -- 3: getscu and movescu give the original bytes back ------------------------------------


def test_getscu_and_movescu_retrieve_the_original_bytes(
    tmp_path: Path, corpus: dict[str, list[Instance]], raw_sending: None
) -> None:
    appliance = Appliance(tmp_path / "appliance")
    appliance.root.mkdir()
    instances = [i for items in corpus.values() for i in items]
    original = {i.sop_uid: i.dataset_sha256 for i in instances}
    with _storescp(tmp_path / "moved", "MOVESCP") as scp_port:
        peers = f"MOVESCP@127.0.0.1:{scp_port}"
        with appliance.serve(RADIANT_DICOM_PEERS=peers):
            statuses = _send_raw(appliance.dicom_port, [i.path for i in instances])
            assert statuses == {i.sop_uid: 0 for i in instances}

            # C-GET: one getscu per transfer syntax, proposing exactly that syntax first
            by_syntax: dict[str, list[Instance]] = defaultdict(list)
            for item in instances:
                by_syntax[item.syntax].append(item)
            assert set(by_syntax) <= set(GETSCU_PREFERENCE)
            got_dir = tmp_path / "got"
            got_dir.mkdir()
            for syntax, items in sorted(by_syntax.items()):
                for study_uid in sorted({i.study_uid for i in items}):
                    chosen = [i for i in items if i.study_uid == study_uid]
                    uids = "\\".join(i.sop_uid for i in chosen)
                    result = _dcmtk(
                        "getscu",
                        "-v",
                        "-S",
                        "+B",
                        GETSCU_PREFERENCE[syntax],
                        "-od",
                        str(got_dir),
                        "-aec",
                        AE_TITLE,
                        "-k",
                        "QueryRetrieveLevel=IMAGE",
                        "-k",
                        f"StudyInstanceUID={study_uid}",
                        "-k",
                        f"SOPInstanceUID={uids}",
                        "127.0.0.1",
                        str(appliance.dicom_port),
                        cwd=tmp_path,
                    )
                    out = result.stdout + result.stderr
                    assert result.returncode == 0, out[-2000:]
                    done = "Completed" if syntax != IMPLICIT_LE else "Failed"
                    assert re.search(rf"Number of {done} Suboperations *: {len(chosen)}\n", out)
                    if syntax == IMPLICIT_LE:  # nothing transcoded: 0xA702, every one failed
                        assert "Refused: OutOfResourcesSubOperations" in out
            assert _received(got_dir) == {
                uid: sha
                for uid, sha in original.items()
                if uid not in {i.sop_uid for i in by_syntax[IMPLICIT_LE]}
            }
            assert by_syntax[IMPLICIT_LE]  # the case was exercised

            # C-MOVE: one movescu per study to the storescp configured as a peer
            for study_uid in sorted({i.study_uid for i in instances}):
                result = _dcmtk(
                    "movescu",
                    "-S",
                    "-aem",
                    "MOVESCP",
                    "-aec",
                    AE_TITLE,
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    f"StudyInstanceUID={study_uid}",
                    "127.0.0.1",
                    str(appliance.dicom_port),
                    cwd=tmp_path,
                )
                assert result.returncode == 0, result.stderr[-2000:]
        assert _received(tmp_path / "moved") == original

    with appliance.db() as conn:
        gets = conn.execute(
            "SELECT SUM(json_extract(detail, '$.instances')) FROM audit_log"
            " WHERE action = 'dicom.get'"
        ).fetchone()[0]
        moves = conn.execute(
            "SELECT COUNT(*), SUM(json_extract(detail, '$.instances')) FROM audit_log"
            " WHERE action = 'dicom.move' AND json_extract(detail, '$.destination') = 'MOVESCP'"
        ).fetchone()
    assert gets == len(instances) and moves == (
        len({i.study_uid for i in instances}),
        len(instances),
    )


# -- 4: malformed files in one association with good ones ----------------------------------

# What storescu (dcmtk 3.6.7) does with each malformed file, and what the receiver answers.
MALFORMED = {
    # dcmtk cannot read these, so it sends nothing (and says so):
    "DICOMDIR-nopatient": "not sent: No SOP Class or Instance UID in file",  # a media index
    "meta_missing_tsyntax.dcm": "not sent: No SOP Class or Instance UID in file",
    "MR_truncated.dcm": "not sent: Bad DICOM file",  # Pixel Data ends before its length
    "rtplan_truncated.dcm": "not sent: Bad DICOM file",  # cut off inside a sequence
    "no_meta.dcm": "not sent: Bad DICOM file",  # a stray byte before the first element
    # dcmtk sends these as they are; the receiver quarantines them (0xC000, reason given):
    "badVR.dcm": "Error: CannotUnderstand",  # IS value "1A"
    "JPEG-lossy.dcm": "Success",  # 12-bit JPEG Extended pylibjpeg refuses: GDCM decodes it
    "JPEG2000-embedded-sequence-delimiter.dcm": "Error: CannotUnderstand",  # J2K undecodable
    "J2K_pixelrep_mismatch.dcm": "Error: CannotUnderstand",  # unsigned J2K, signed pixels
}
QUARANTINE_REASONS = {
    "badVR.dcm": "NumberOfFrames (IS) holds a value that is not a number",
    "JPEG2000-embedded-sequence-delimiter.dcm": "compressed pixel data does not decode",
    "J2K_pixelrep_mismatch.dcm": "JPEG 2000 codestream is unsigned but PixelRepresentation",
}


def test_move_subassociation_reactor_leaves_responses_to_the_sender() -> None:
    """The C-MOVE sub-association's reactor thread never takes a DIMSE message: under load it
    used to take a C-STORE-RSP meant for the sender (pynetdicom's pause of the reactor is racy),
    which then waited out the DIMSE timeout, aborted, and failed the remaining sub-operations.
    The reactor thread is the Association thread; the sender is any other thread."""
    assoc = Association(AE(), "requestor")
    SenderTakesEveryMessage.install(assoc)
    SenderTakesEveryMessage.install(assoc)  # idempotent: one wrapper, not a chain
    assert isinstance(assoc.dimse.get_msg, SenderTakesEveryMessage)
    assert not isinstance(assoc.dimse.get_msg.get_msg, SenderTakesEveryMessage)
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.Status = 0
    assoc.dimse.msg_queue.put((1, rsp))
    seen_by_reactor: list[tuple[object, object]] = []
    setattr(assoc, "run", lambda: seen_by_reactor.append(assoc.dimse.get_msg(block=False)))  # noqa: B010
    assoc.start()
    assoc.join(10)
    assert seen_by_reactor == [(None, None)]
    assert assoc.dimse.get_msg(block=False) == (1, rsp)  # still there for the sender


def test_malformed_files_are_quarantined_in_one_association_with_good_ones(
    tmp_path: Path, corpus: dict[str, list[Instance]]
) -> None:
    appliance = Appliance(tmp_path)
    good = corpus["mr_siemens_transfer_syntax_matrix"]
    malformed = sorted(p for p in (DATA / "malformed").iterdir() if p.suffix != ".txt")
    assert {p.name for p in malformed} == set(MALFORMED)
    files = [good[0].path, *malformed, *[g.path for g in good[1:]]]
    with appliance.serve():
        result, verdicts = _storescu(appliance, files)
        out = result.stdout + result.stderr
        assert out.count("Requesting Association") == 1  # one association for all of them
        assert {Path(f).name: v for f, v in verdicts.items() if "malformed" in f} == MALFORMED
        assert all(verdicts[str(g.path)] == "Success" for g in good)
        echo = _dcmtk("echoscu", "-aec", AE_TITLE, "127.0.0.1", str(appliance.dicom_port))
        assert echo.returncode == 0  # the receiver is still serving
    assert appliance.count("instances") == len(good) + 1  # and the 12-bit lossy JPEG
    with appliance.db() as conn:
        rows = conn.execute(
            "SELECT reason, source, origin, sop_instance_uid FROM quarantine"
        ).fetchall()
        audited = conn.execute(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'dicom.quarantine'"
        ).fetchone()[0]
    assert len(rows) == len(QUARANTINE_REASONS) == audited
    reasons = sorted(r[0] for r in rows)
    for expected in QUARANTINE_REASONS.values():
        assert any(r.startswith(expected) for r in reasons), (expected, reasons)
    assert {(r[1], r[2]) for r in rows} == {("network", "STORESCU")}


# -- 5: the disk watermark ------------------------------------------------------------------


def test_low_disk_refuses_stores_and_writes_nothing(
    tmp_path: Path, corpus: dict[str, list[Instance]]
) -> None:
    appliance = Appliance(tmp_path)
    series = corpus["ct_ge_head_tilt18_varspacing"]
    with appliance.serve(RADIANT_MIN_FREE_GB="100000"):  # more than any test disk has free
        _, verdicts = _storescu(appliance, [i.path for i in series])
    assert {verdicts[str(i.path)] for i in series} == {"Refused: OutOfResources"}
    assert appliance.count("instances") == 0 and appliance.count("quarantine") == 0
    assert appliance.object_files() == []
    assert not list((appliance.data_dir / "quarantine").rglob("*.dcm"))


# -- 6: the calling AE allow-list ----------------------------------------------------------


def test_calling_ae_not_allowed_is_refused_and_audited(
    tmp_path: Path, corpus: dict[str, list[Instance]]
) -> None:
    appliance = Appliance(tmp_path)
    item = corpus["xr_chest_cr_dx"][0]
    with appliance.serve(RADIANT_DICOM_ALLOWED_AETS="OTHER"):
        result, verdicts = _storescu(appliance, [item.path], "-aet", "BADAE")
        allowed = _dcmtk(
            "echoscu", "-aet", "OTHER", "-aec", AE_TITLE, "127.0.0.1", str(appliance.dicom_port)
        )
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Association Rejected" in out
    assert "Calling AE Title Not Recognized" in out and verdicts == {}
    assert allowed.returncode == 0
    assert appliance.count("instances") == 0
    with appliance.db() as conn:
        rows = conn.execute(
            "SELECT actor, outcome, client, detail FROM audit_log"
            " WHERE action = 'dicom.association'"
        ).fetchall()
    assert rows == [
        (
            "dicom:BADAE",
            "refused",
            "127.0.0.1",
            '{"calling_ae":"BADAE","reason":"calling AE title not allowed"}',
        )
    ]


def test_acks_on_parallel_associations_never_precede_their_own_commit(
    tmp_path: Path, corpus: dict[str, list[Instance]], raw_sending: None
) -> None:
    """Two associations send at once (their instances share group commits); at the moment
    each Success arrives, this process (another one than the receiver) must already see that
    instance's committed row and its whole file."""
    appliance = Appliance(tmp_path)
    halves = [corpus["mr_siemens_t1_sag_brain_35sl"], corpus["ct_ge_head_tilt18_varspacing"]]
    early: list[str] = []
    checked: list[str] = []

    def check(sop_uid: str) -> None:
        with appliance.db() as conn:
            row = conn.execute(
                "SELECT storage_key, sha256 FROM instances WHERE sop_instance_uid = ?", (sop_uid,)
            ).fetchone()
        if row is None:
            early.append(sop_uid)
            return
        data = (appliance.data_dir / "objects" / row[0]).read_bytes()
        if hashlib.sha256(data).hexdigest() != row[1]:
            early.append(sop_uid)
        checked.append(sop_uid)

    with appliance.serve():
        senders = [
            threading.Thread(
                target=_send_raw,
                args=(appliance.dicom_port, [i.path for i in half]),
                kwargs={"on_ack": check},
            )
            for half in halves
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(300)
    assert early == []
    assert sorted(checked) == sorted(i.sop_uid for half in halves for i in half)


# -- 7: nothing acknowledged is lost, whenever the power goes -------------------------------

CRASH_ROUNDS = 5


def _kill_group(served: Served) -> None:
    os.killpg(served.process.pid, signal.SIGKILL)
    served.process.wait()


def test_acknowledged_instances_survive_sigkill(
    tmp_path: Path, corpus: dict[str, list[Instance]], raw_sending: None
) -> None:
    appliance = Appliance(tmp_path)
    series = corpus["mr_siemens_t1_sag_brain_35sl"]
    files = [i.path for i in series]
    rng = random.Random(20251125)
    acknowledged: list[str] = []
    for _ in range(CRASH_ROUNDS):
        with appliance.serve() as served:
            acked: list[str] = []
            stop = threading.Event()
            # two associations at once (their instances share group commits), halves of it
            senders = [
                threading.Thread(target=_send_raw, args=(appliance.dicom_port, part, acked, stop))
                for part in (files[0::2], files[1::2])
            ]
            # kill once a random number of instances were acknowledged in this round (a
            # duplicate is acknowledged too), plus a random pause: wherever that falls
            kill_after = rng.randrange(1, len(files))
            pause = rng.uniform(0.0, 0.05)
            for sender in senders:
                sender.start()
            while len(acked) < kill_after and any(s.is_alive() for s in senders):
                time.sleep(0.001)
            time.sleep(pause)
            _kill_group(served)
            stop.set()
            for sender in senders:
                sender.join(60)
                assert not sender.is_alive()
            acknowledged.extend(acked)
    assert acknowledged

    def consistent() -> None:
        with appliance.db() as conn:
            rows = conn.execute(
                "SELECT sop_instance_uid, storage_key, sha256 FROM instances"
            ).fetchall()
        objects = appliance.data_dir / "objects"
        for _, key, sha in rows:
            assert hashlib.sha256((objects / key).read_bytes()).hexdigest() == sha
        assert sorted(str(p.relative_to(objects)) for p in appliance.object_files()) == sorted(
            key for _, key, _ in rows
        )
        stored = {uid for uid, _, _ in rows}
        assert set(acknowledged) <= stored  # nothing acknowledged was lost
        by_uid = {i.sop_uid: i for i in series}
        for uid, key, _ in rows:  # and each is the instance that was sent, byte for byte
            assert _dataset_sha256(objects / key) == by_uid[uid].dataset_sha256

    # Restart (recovery runs first), check, resend everything, check again.
    with appliance.serve():
        consistent()
        statuses = _send_raw(appliance.dicom_port, files)
        assert statuses == {i.sop_uid: 0 for i in series}
    consistent()
    assert appliance.count("instances") == len(series)
    if importlib.util.find_spec("appliance.dicom.fsck") is not None:
        fsck = subprocess.run(
            [*RADIANT, "fsck", "--data-dir", str(appliance.data_dir)],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=False,
        )
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
