"""Hostile variants of one small real instance (a 16x16 CR of the PCIR set, explicit VR LE).

Each function returns the bytes of one past defect's input; ``python -m tests.hostile`` writes
them to ``tests/data/regressions/`` (where they are kept, one file per bug, and replayed by
``tests/unit/test_regressions.py``).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

from tests.dicom_files import DATA, instance_files

REGRESSIONS = DATA / "regressions"


def base() -> bytes:
    return instance_files("dicomdir_pcir_3patients_prior_current")[0].read_bytes()


def _find(data: bytes, group: int, element: int) -> int:
    """Offset of the first explicit-VR LE element with this tag after the File Meta."""
    needle = struct.pack("<HH", group, element)
    pos = data.index(needle, 132 + 12)
    return pos


def nested_sequences(depth: int = 1000) -> bytes:
    """A data set ending in (FFFA,FFFA) Digital Signatures Sequence nested ``depth`` deep
    (undefined lengths): pydicom and the fast scan recursed until RecursionError."""
    opening = struct.pack("<HH2sHI", 0xFFFA, 0xFFFA, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return base() + (opening + item) * depth + closing * depth


def length_beyond_input() -> bytes:
    """Study Description (0008,1030) declares far more bytes than the file holds."""
    data = bytearray(base())
    pos = _find(bytes(data), 0x0008, 0x0030)  # StudyTime is present in the base
    struct.pack_into("<H", data, pos + 6, 0xFFF0)
    return bytes(data)


def truncated(keep: int = 1800) -> bytes:
    """The base cut inside Pixel Data and its header fields: truncation, reported as such."""
    return base()[:keep]


def charset_with_nul() -> bytes:
    """Specific Character Set 'ISO_IR 100' with an embedded NUL: the fast scan stored it, the
    full reader refused it (its preview then answered 422)."""
    data = bytearray(base())
    needle = b"ISO_IR 100"
    pos = bytes(data).find(needle)
    if pos < 0:
        # insert a Specific Character Set (0008,0005) right after the File Meta
        meta_end = _meta_end(bytes(data))
        element = struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", 10) + b"ISO\x00IR 100"
        return bytes(data[:meta_end]) + element + bytes(data[meta_end:])
    data[pos + 3] = 0
    return bytes(data)


def corrupted_vr() -> bytes:
    """The VR of Modality (0008,0060) overwritten with two bytes that are no VR."""
    data = bytearray(base())
    pos = _find(bytes(data), 0x0008, 0x0060)
    data[pos + 4 : pos + 6] = b"\x01\x02"
    return bytes(data)


def corrupted_short_length() -> bytes:
    """Patient ID (0010,0020) length shortened by one: the element walk goes out of step."""
    data = bytearray(base())
    pos = _find(bytes(data), 0x0010, 0x0020)
    (length,) = struct.unpack_from("<H", data, pos + 6)
    struct.pack_into("<H", data, pos + 6, max(length - 1, 0))
    return bytes(data)


def vr_bytes(group: int, element: int, vr: bytes) -> bytes:
    """The VR bytes of one element replaced (the length field left as it is)."""
    data = bytearray(base())
    pos = _find(bytes(data), group, element)
    data[pos + 4 : pos + 6] = vr
    return bytes(data)


def _meta_end(data: bytes) -> int:
    (group_length,) = struct.unpack_from("<I", data, 132 + 8)
    return 132 + 12 + group_length


CASES: dict[str, Callable[[], bytes]] = {
    "nested_sequences_1000.dcm": nested_sequences,
    "element_length_beyond_input.dcm": length_beyond_input,
    "truncated_in_pixel_data.dcm": truncated,
    "charset_with_nul.dcm": charset_with_nul,
    "corrupted_vr.dcm": corrupted_vr,
    "corrupted_short_length.dcm": corrupted_short_length,
    # found by random byte corruption: pydicom converts the value lazily and raised
    # NotImplementedError (not a refusal) from the ingest check
    "vr_not_ascii_lazy_conversion.dcm": lambda: vr_bytes(0x0018, 0x1190, b"\x44\xa3"),
    # found by random byte corruption: pydicom read 'UD' with a 2-byte length and stored it,
    # dcmtk reads a 4-byte length and fails on the stored file
    "unknown_vr_letters.dcm": lambda: vr_bytes(0x0028, 0x0102, b"UD"),
    # found by the front end fuzz target: reading SOPInstanceUID for the quarantine row raised
    # NotImplementedError before the checks (0xA701 "retry later" over DICOM, forever)
    "sop_instance_uid_unknown_vr.dcm": lambda: vr_bytes(0x0008, 0x0018, b"U\x00"),
}


def write(folder: Path = REGRESSIONS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in CASES.items():
        (folder / name).write_bytes(make())


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else REGRESSIONS)
