"""The Part 10 header of a data set received over the network (PS3.10 7.1): preamble,
``DICM`` prefix and File Meta Information, so it is stored as a DICOM file.
"""

from __future__ import annotations

import struct


def _meta_element(group_element: int, vr: bytes, value: bytes) -> bytes:
    group, element = 0x0002, group_element
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _padded_uid(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def file_meta(
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    implementation_uid: str,
    implementation_version: str,
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information (PS3.10 7.1) for a received data set."""
    version = implementation_version.encode("ascii")[:16]
    if len(version) % 2:
        version += b" "
    elements = b"".join(
        (
            _meta_element(0x0001, b"OB", b"\x00\x01"),
            _meta_element(0x0002, b"UI", _padded_uid(sop_class)),
            _meta_element(0x0003, b"UI", _padded_uid(sop_instance)),
            _meta_element(0x0010, b"UI", _padded_uid(transfer_syntax)),
            _meta_element(0x0012, b"UI", _padded_uid(implementation_uid)),
            _meta_element(0x0013, b"SH", version),
        )
    )
    length = _meta_element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return bytes(128) + b"DICM" + length + elements
