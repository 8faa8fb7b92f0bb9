"""Hostile C-STORE input on both front ends (issue 16): a data set beyond the parser limits gets
a 0xC000-range failure with an error comment and the association goes on; a command whose
Affected SOP Instance/Class UID differs from the data set's is refused with 0xA900 (PS3.4
B.2.3) and nothing is stored."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    SecondaryCaptureImageStorage,
)

from appliance.context import AppContext
from appliance.dicom.receiver import Receiver
from tests import hostile
from tests.unit import test_receiver as receiver_tests
from tests.unit.test_receiver import EXPLICIT_LE, _count

# the receiver fixtures (both front ends) of the receiver tests
frontend = receiver_tests.frontend
make_receiver = receiver_tests.make_receiver
served = receiver_tests.served

DATASET_MISMATCH = 0xA900


def _send_files(receiver: Receiver, paths: list[Path]) -> list[tuple[int, str]]:
    """C-STORE each file as it is on disk (pynetdicom sends the encoded bytes unchanged), all in
    one association; (status, error comment) each."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(ComputedRadiographyImageStorage, [EXPLICIT_LE])
    ae.add_requested_context(SecondaryCaptureImageStorage, [EXPLICIT_LE])
    assoc = ae.associate("127.0.0.1", receiver.settings.dicom_port, ae_title="RADIANT")
    assert assoc.is_established
    answers = []
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            assert status is not None and "Status" in status, "no answer: association lost"
            answers.append((int(status.Status), str(status.get("ErrorComment", ""))))
        assert assoc.is_established
    finally:
        assoc.release()
    return answers


def _with_meta_uid(tmp_path: Path, name: str, **meta: str) -> Path:
    """The base instance whose File Meta (and so the C-STORE command pynetdicom builds from it)
    names other UIDs than the data set."""
    ds = pydicom.dcmread(hostile.instance_files("dicomdir_pcir_3patients_prior_current")[0])
    for keyword, value in meta.items():
        setattr(ds.file_meta, keyword, UID(value))
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=False)
    return path


def test_data_set_beyond_the_limits_fails_with_a_reason_and_the_association_goes_on(
    served: tuple[Receiver, AppContext], tmp_path: Path
) -> None:
    receiver, ctx = served
    good = hostile.instance_files("dicomdir_pcir_3patients_prior_current")[0]
    answers = _send_files(receiver, [hostile.REGRESSIONS / "nested_sequences_1000.dcm", good])
    (status, comment), (after, _) = answers
    assert 0xC000 <= status <= 0xCFFF, hex(status)
    assert "nested deeper" in comment and len(comment) <= 64
    assert after == 0x0000  # same association
    db = ctx.pool.get()
    assert _count(db, "instances") == 1 and _count(db, "quarantine") == 1


def test_command_uids_must_equal_the_data_sets(
    served: tuple[Receiver, AppContext], tmp_path: Path
) -> None:
    receiver, ctx = served
    other_instance = _with_meta_uid(tmp_path, "a.dcm", MediaStorageSOPInstanceUID="1.2.3.4.5")
    answers = _send_files(receiver, [other_instance])
    assert answers[0][0] == DATASET_MISMATCH, answers
    assert "SOP Instance UID" in answers[0][1]
    db = ctx.pool.get()
    assert _count(db, "instances") == 0
    assert list(ctx.store.iter_keys("dicom/")) == []


def test_a_path_as_affected_sop_instance_uid_is_refused(
    served: tuple[Receiver, AppContext], tmp_path: Path
) -> None:
    receiver, ctx = served
    traversal = _with_meta_uid(
        tmp_path, "b.dcm", MediaStorageSOPInstanceUID="../../../../etc/passwd"
    )
    other_class = _with_meta_uid(
        tmp_path, "c.dcm", MediaStorageSOPClassUID="1.2.840.10008.5.1.4.1.1.7"
    )
    answers = _send_files(receiver, [traversal, other_class])
    assert [status for status, _ in answers] == [DATASET_MISMATCH, DATASET_MISMATCH], answers
    assert "SOP Class UID" in answers[1][1]
    db = ctx.pool.get()
    assert _count(db, "instances") == 0
    assert b"etc/passwd" not in b"".join(
        (ctx.store.root / key).read_bytes() for key in ctx.store.iter_keys("dicom/")
    )
