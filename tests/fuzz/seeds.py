"""The committed seed corpora of the fuzz targets (``tests/data/fuzz/<target>/``): small valid
inputs each target's fuzzer mutates. ``python -m tests.fuzz.seeds`` rewrites them."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from appliance.dicom import dimse, ul
from tests import hostile
from tests.dicom_files import DATA
from tests.fuzz.targets import CR, SYNTAXES, VERIFICATION, zip_of

SEEDS = DATA / "fuzz"


def _association(*contexts: tuple[int, str]) -> bytes:
    return ul.encode_associate_rq(
        "RADIANT",
        "FUZZSCU",
        [ul.ProposedContext(cid, sop, list(SYNTAXES)) for cid, sop in contexts],
        max_pdu=16384,
        implementation_uid="1.2.3.4",
        implementation_version="FUZZ",
    )


def _echo() -> bytes:
    command = dimse.encode_command(
        [
            (dimse.AFFECTED_SOP_CLASS_UID, VERIFICATION),
            (dimse.COMMAND_FIELD, dimse.C_ECHO_RQ),
            (dimse.MESSAGE_ID, 1),
            (dimse.COMMAND_DATA_SET_TYPE, dimse.NO_DATA_SET),
        ]
    )
    return b"".join(ul.encode_p_data(1, True, command, 16384))


def _store(instance: bytes) -> bytes:
    # the data set of the Part 10 file (after its File Meta), as a peer sends it
    (meta_length,) = struct.unpack_from("<I", instance, 140)
    data_set = instance[144 + meta_length :]
    command = dimse.store_request(1, CR, "1.2.826.0.1.3680043.8.498.1")
    return b"".join(ul.encode_p_data(3, True, command, 16384)) + b"".join(
        ul.encode_p_data(3, False, data_set, 4096)
    )


def seeds() -> dict[str, list[bytes]]:
    base = hostile.base()
    release = ul.encode_release_rq()
    association = _association((1, VERIFICATION), (3, CR))
    p_data = _echo()
    command = dimse.store_request(7, CR, "1.2.3.4.5")
    dicomdir = (DATA / "dicomdir_pcir_3patients_prior_current" / "DICOMDIR").read_bytes()
    return {
        "pdu": [
            bytes([0]) + association[6:],
            bytes([1])
            + ul.encode_associate_ac(
                ul.decode_associate_rq(association[6:]),
                [ul.ContextResult(1, 0, SYNTAXES[0]), ul.ContextResult(3, 3, SYNTAXES[0])],
                max_pdu=16384,
                implementation_uid="1.2.3.4",
                implementation_version="FUZZ",
            )[6:],
            bytes([2]) + p_data[6:],
            bytes([3]) + command,
            bytes([0xFF]) + release,
        ],
        "frontend": [
            association + p_data + release,
            association + _store(base) + release,
            association + ul.encode_abort(0, 0),
        ],
        "scan": [base, hostile.truncated(), hostile.nested_sequences(3)],
        "dicomdir": [dicomdir],
        "zip_upload": [
            zip_of({"a/1.dcm": base, "b/readme.txt": b"hello"}),
            zip_of({"DICOMDIR": dicomdir[:2000], "x.dcm": base[:1500]}),
        ],
    }


def write(folder: Path = SEEDS) -> None:
    for target, inputs in seeds().items():
        out = folder / target
        out.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (out / hashlib.sha1(data).hexdigest()).write_bytes(data)


if __name__ == "__main__":
    write()
