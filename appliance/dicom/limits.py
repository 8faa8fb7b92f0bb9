"""Depth, size and count limits on an encoded DICOM data set, checked before any parser builds it.

:func:`check_structure` walks the encoded elements once, without recursion, and refuses
(:class:`Refused`; the reader turns it into a quarantine reason) a data set
whose sequences nest deeper than :data:`MAX_SEQUENCE_DEPTH`, that holds more than
:data:`MAX_ELEMENTS` elements, or whose element, item or fragment declares more bytes than the
data holds (truncation, PS3.5 7.1). Recursive parsers (pydicom, the fast scan) only see data
within these bounds. Encodings it cannot follow (a private transfer syntax, VR bytes that are
not a VR) end the walk without a verdict: the full reader decides then, with its own guard.
"""

from __future__ import annotations

import contextlib
import struct
import zlib

from pydicom.datadict import dictionary_VR

MAX_SEQUENCE_DEPTH = 32
MAX_ELEMENTS = 1_000_000
MAX_INFLATED_BYTES = 1 << 30  # a deflated data set (1.2.840.10008.1.2.1.99) may grow to this

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
     b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)  # fmt: skip
_DATASET, _SEQUENCE, _FRAGMENTS = 0, 1, 2


class Refused(Exception):
    """Beyond a limit, or truncated; ``reason`` says which in plain words (no PHI)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unsure(Exception):
    """An encoding this walk does not follow: no verdict."""


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _is_sequence(tag: int) -> bool:
    try:
        return str(dictionary_VR(tag)) == "SQ"
    except KeyError:
        return False


def check_structure(data: bytes) -> None:
    """Refuse a Part 10 file beyond the limits, or truncated; return quietly otherwise."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return  # not Part 10: the full reader says so
    try:
        syntax, pos = _meta(data)
        if syntax in DEFLATED[:1]:
            body = _inflate(memoryview(data)[pos:])
            _walk(body, 0, explicit=True, little=True)
        else:
            explicit = syntax != IMPLICIT_LE
            _walk(data, pos, explicit=explicit, little=syntax != EXPLICIT_BE)
    except _Unsure:
        return


def meta_uids(data: bytes) -> tuple[str, str]:
    """Media Storage SOP Class and Instance UIDs of the File Meta (PS3.10 7.1; "" if absent)."""
    values: dict[int, str] = {}
    with contextlib.suppress(_Unsure, Refused, struct.error):
        _meta(data, values)
    return values.get(0x0002, ""), values.get(0x0003, "")


def _meta(data: bytes, values: dict[int, str] | None = None) -> tuple[str, int]:
    """Transfer Syntax UID and the end of the File Meta group (always explicit VR LE)."""
    pos, syntax = 132, ""
    while len(data) - pos >= 8:
        group, element, vr = struct.unpack_from("<HH2s", data, pos)
        if group != 0x0002:
            break
        if vr in _LONG_VRS:
            if len(data) - pos < 12:
                break
            (length,) = struct.unpack_from("<I", data, pos + 8)
            start = pos + 12
        elif vr in _SHORT_VRS:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            start = pos + 8
        else:
            raise _Unsure
        if length == _UNDEFINED or start + length > len(data):
            raise Refused(
                f"the data is truncated: File Meta element {_tag(group << 16 | element)} "
                f"declares {length} bytes but only {max(len(data) - start, 0)} follow"
            )
        if element == 0x0010:
            syntax = data[start : start + length].decode("ascii", "replace").strip("\x00 ")
        elif values is not None and element in (0x0002, 0x0003):
            values[element] = data[start : start + length].decode("ascii", "replace")
            values[element] = values[element].rstrip("\x00 ")
        pos = start + length
    return syntax, pos


def _inflate(body: memoryview) -> bytes:
    """A deflated data set (PS3.5 A.5), refused when it would inflate past the bound."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_INFLATED_BYTES)
    except zlib.error:
        raise Refused("the deflated data set does not inflate (PS3.5 A.5)") from None
    if inflater.unconsumed_tail:
        raise Refused(f"the deflated data set inflates beyond {MAX_INFLATED_BYTES} bytes")
    return out


def _walk(data: bytes, pos: int, *, explicit: bool, little: bool) -> None:
    """One pass with an explicit stack of (kind, end or None, explicit) frames."""
    order = "<" if little else ">"
    tag_length = struct.Struct(order + "HHI")
    explicit_head = struct.Struct(order + "HH2sH")
    long_length = struct.Struct(order + "I")
    size = len(data)
    stack: list[tuple[int, int | None, bool]] = [(_DATASET, size, explicit)]
    count = 0
    while stack:
        kind, end, exp = stack[-1]
        if end is not None and pos >= end:
            stack.pop()
            continue
        if size - pos < 8:
            raise Refused(
                f"the data is truncated: it ends inside an element header at byte {pos}"
                if size > pos
                else "the data is truncated: it ends inside a sequence or item"
            )
        group, element, length = tag_length.unpack_from(data, pos)
        tag = group << 16 | element
        if kind != _DATASET or group == 0xFFFE:
            pos = _delimiter_or_item(stack, kind, tag, length, pos, size)
            continue
        count += 1
        if count > MAX_ELEMENTS:
            raise Refused(f"more than {MAX_ELEMENTS} data elements")
        vr: bytes | None = None
        start = pos + 8
        if exp:
            _, _, vr, short = explicit_head.unpack_from(data, pos)
            if vr in _SHORT_VRS:
                length = short
            else:
                length, start = _long_length(data, pos, tag, vr, long_length)
        if length == _UNDEFINED:
            _enter_undefined(stack, vr, tag, exp)
            pos = start
            continue
        if start + length > size:
            raise Refused(
                f"the data is truncated: element {_tag(tag)} declares {length} bytes "
                f"but only {max(size - start, 0)} follow"
            )
        if vr == b"SQ" or (vr is None and _is_sequence(tag)):
            _check_depth(stack)
            stack.append((_SEQUENCE, start + length, exp))
            pos = start
            continue
        pos = start + length
        if end is not None and pos > end:
            raise _Unsure


def _long_length(
    data: bytes, pos: int, tag: int, vr: bytes, long_length: struct.Struct
) -> tuple[int, int]:
    """(value length, value offset) of an Explicit VR element whose VR has a 4-byte length
    (PS3.5 7.1.2, Table 7.1-1); an unknown VR is refused."""
    if vr in _LONG_VRS:
        if len(data) - pos < 12:
            raise Refused(f"the data is truncated: element {_tag(tag)} has no length")
        (length,) = long_length.unpack_from(data, pos + 8)
        return length, pos + 12
    if vr.isalpha() and vr.isupper():
        # dcmtk reads an unknown VR with a 4-byte length, pydicom with 2: no two
        # readers agree on the rest of the data set (PS3.5 6.2, 7.1.2)
        raise Refused(f"element {_tag(tag)} has an unknown VR '{vr.decode()}'")
    raise _Unsure


def _enter_undefined(
    stack: list[tuple[int, int | None, bool]], vr: bytes | None, tag: int, exp: bool
) -> None:
    """Push the frame of an undefined-length element: encapsulated pixel data's fragments or
    a sequence (PS3.5 7.5.2, A.4)."""
    if vr in (b"OB", b"OW") or (vr is None and tag == 0x7FE00010):
        stack.append((_FRAGMENTS, None, exp))
    elif vr in (b"SQ", b"UN") or vr is None:
        # an undefined-length UN is an implicit VR LE sequence (PS3.5 6.2.2)
        _check_depth(stack)
        stack.append((_SEQUENCE, None, exp and vr != b"UN"))
    else:
        raise _Unsure


def _check_depth(stack: list[tuple[int, int | None, bool]]) -> None:
    """Before entering one more sequence."""
    if sum(1 for frame in stack if frame[0] == _SEQUENCE) >= MAX_SEQUENCE_DEPTH:
        raise Refused(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")


def _delimiter_or_item(
    stack: list[tuple[int, int | None, bool]],
    kind: int,
    tag: int,
    length: int,
    pos: int,
    size: int,
) -> int:
    """Handle an item, item delimiter or sequence delimiter at ``pos``; the next position."""
    _, end, exp = stack[-1]
    if tag == _SEQUENCE_END and kind != _DATASET:
        if end is not None:
            raise _Unsure
        stack.pop()
        return pos + 8
    if tag == _ITEM_END and kind == _DATASET:
        if end is not None:
            raise _Unsure
        stack.pop()
        return pos + 8
    if tag != _ITEM or kind == _DATASET:
        raise _Unsure
    start = pos + 8
    if length == _UNDEFINED:
        if kind == _FRAGMENTS:
            raise _Unsure
        stack.append((_DATASET, None, exp))
        return start
    if start + length > size:
        raise Refused(
            f"the data is truncated: an item at byte {pos} declares {length} bytes "
            f"but only {max(size - start, 0)} follow"
        )
    if kind == _SEQUENCE:
        stack.append((_DATASET, start + length, exp))
        return start
    return start + length  # a pixel data fragment
