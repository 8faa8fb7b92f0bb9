"""The native front end relays Query/Retrieve associations to pynetdicom byte for byte: dcmtk's
findscu and getscu work through it, an association mixing storage and C-FIND works, the real
client IP reaches the audit rows, and a storage-only association is served natively."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
)

from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.dicom.native_scp import IMPLEMENTATION_UID
from appliance.dicom.receiver import Receiver
from tests.servers import free_port

DATA = Path(__file__).resolve().parents[1] / "data"
T1 = sorted((DATA / "mr_siemens_t1_sag_brain_35sl").glob("*.dcm"))
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Receiver, AppContext]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        dicom_frontend="native",
        dicom_peers="FINDSCU@127.0.0.1:104,GETSCU@127.0.0.1:104,MIXED@127.0.0.1:104",
    )
    ctx = prepare(settings)
    receiver = Receiver(ctx)
    receiver.start()
    assert receiver.status().listening, receiver.status().error
    yield receiver, ctx
    receiver.stop()
    ctx.pool.close_all()


def _dcmtk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        timeout=120,
        check=False,
    )


def _data_set(path: Path) -> bytes:
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def _store_all(receiver: Receiver, files: list[Path]) -> str:
    """Send with a storage-only association; returns the acceptor's implementation UID."""
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(MRImageStorage, [EXPLICIT_LE])
    assoc = ae.associate("127.0.0.1", receiver.settings.dicom_port, ae_title="RADIANT")
    assert assoc.is_established
    try:
        for path in files:
            assert assoc.send_c_store(path).Status == 0x0000
        return str(assoc.acceptor.implementation_class_uid)
    finally:
        assoc.release()


def test_findscu_and_getscu_are_relayed_and_storage_is_native(
    served: tuple[Receiver, AppContext], tmp_path: Path
) -> None:
    receiver, ctx = served
    assert _store_all(receiver, T1[:3]) == IMPLEMENTATION_UID  # served natively
    first = pydicom.dcmread(T1[0], stop_before_pixels=True)
    port = str(receiver.settings.dicom_port)

    found_dir = tmp_path / "found"
    found_dir.mkdir()
    result = _dcmtk("findscu", "-S", "-X", "-od", str(found_dir), "-aec", "RADIANT",
                    "-k", "QueryRetrieveLevel=SERIES", "-k",
                    f"StudyInstanceUID={first.StudyInstanceUID}", "-k", "SeriesInstanceUID",
                    "-k", "NumberOfSeriesRelatedInstances", "127.0.0.1", port)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (response,) = [pydicom.dcmread(p) for p in found_dir.glob("rsp*.dcm")]
    assert response.SeriesInstanceUID == first.SeriesInstanceUID
    assert int(response.NumberOfSeriesRelatedInstances) == 3

    got_dir = tmp_path / "got"
    got_dir.mkdir()
    result = _dcmtk("getscu", "-S", "+B", "+xe", "-od", str(got_dir), "-aec", "RADIANT",
                    "-k", "QueryRetrieveLevel=SERIES", "-k",
                    f"StudyInstanceUID={first.StudyInstanceUID}", "-k",
                    f"SeriesInstanceUID={first.SeriesInstanceUID}", "127.0.0.1", port)  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = sorted(got_dir.iterdir())
    assert len(got) == 3
    originals = {pydicom.dcmread(p).SOPInstanceUID: _data_set(p) for p in T1[:3]}
    for path in got:
        # the data set after the File Meta Information, byte for byte
        assert originals[pydicom.dcmread(path).SOPInstanceUID] == _data_set(path)

    db = ctx.pool.get()
    rows = db.execute(
        "SELECT action, client, detail FROM audit_log WHERE action IN ('dicom.find', 'dicom.get')"
        " ORDER BY id"
    ).fetchall()
    assert [(a, c) for a, c, _ in rows] == [("dicom.find", "127.0.0.1"), ("dicom.get", "127.0.0.1")]
    assert json.loads(rows[1][2])["instances"] == 3
    assert receiver.status().stored == 3


def test_an_association_mixing_storage_and_find_is_relayed_and_works(
    served: tuple[Receiver, AppContext],
) -> None:
    receiver, ctx = served
    ae = AE(ae_title="MIXED")
    ae.add_requested_context(MRImageStorage, [EXPLICIT_LE])
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", receiver.settings.dicom_port, ae_title="RADIANT")
    assert assoc.is_established
    try:
        # pynetdicom answered the association: the front end relayed it
        assert assoc.acceptor.implementation_class_uid == PYNETDICOM_IMPLEMENTATION_UID
        assert assoc.send_c_store(T1[0]).Status == 0x0000
        first = pydicom.dcmread(T1[0], stop_before_pixels=True)
        query = pydicom.Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = first.StudyInstanceUID
        responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    statuses = [int(status.Status) for status, _ in responses]
    assert statuses == [0xFF00, 0x0000]
    assert responses[0][1] is not None
    assert responses[0][1].StudyInstanceUID == first.StudyInstanceUID
    origin = ctx.pool.get().execute("SELECT origin FROM instances").fetchone()[0]
    assert origin == "MIXED"


def test_relayed_associations_are_checked_in_front_and_keep_the_client_ip(
    tmp_path: Path,
) -> None:
    """Allow-list 127.0.0.2 only: a C-FIND association from 127.0.0.1 is refused in front; one
    from 127.0.0.2 is relayed, and the internal AE (which sees the relay's 127.0.0.1) lets it
    in and audits it with the real client IP."""
    settings = Settings(
        data_dir=tmp_path / "data",
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        dicom_allowed_ips="127.0.0.2",
        dicom_peers="FINDSCU@127.0.0.2:104",
    )
    ctx = prepare(settings)
    receiver = Receiver(ctx)
    receiver.start()
    try:
        ae = AE(ae_title="FINDSCU")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        refused = ae.associate("127.0.0.1", settings.dicom_port, ae_title="RADIANT")
        assert refused.is_rejected
        allowed = ae.associate(
            "127.0.0.1", settings.dicom_port, ae_title="RADIANT", bind_address=("127.0.0.2", 0)
        )
        assert allowed.is_established
        try:
            query = pydicom.Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            responses = list(allowed.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
        finally:
            allowed.release()
        assert [int(status.Status) for status, _ in responses] == [0x0000]
        db = ctx.pool.get()
        rows = db.execute(
            "SELECT action, client, detail FROM audit_log"
            " WHERE action IN ('dicom.association', 'dicom.find') ORDER BY id"
        ).fetchall()
        assert [(a, c) for a, c, _ in rows] == [
            ("dicom.association", "127.0.0.1"),
            ("dicom.find", "127.0.0.2"),
        ]
        assert json.loads(rows[0][2])["reason"] == "calling IP address not allowed"
    finally:
        receiver.stop()
        ctx.pool.close_all()
