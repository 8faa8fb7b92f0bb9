"""One pass over the encoded elements of a data set, for :mod:`appliance.dicom.scan`.

Elements are read as PS3.5 section 7 encodes them in Little Endian: Explicit VR (7.1.2, with
the 4-byte length of the VRs of Table 7.1-1) or Implicit VR (7.1.3, the VR from the PS3.6
dictionary), sequences and items of defined or undefined length (7.5). Anything unusual
raises :class:`Unsure`: the caller then leaves the instance to the full reader.
"""

from __future__ import annotations

import math
import struct

from pydicom.datadict import dictionary_VR

from appliance.dicom.limits import MAX_SEQUENCE_DEPTH

UNDEFINED_LENGTH = 0xFFFFFFFF
_TAG_LENGTH = struct.Struct("<HHI")
_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_UINT = struct.Struct("<I")
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
VRS = _LONG_VRS | {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
    b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}  # fmt: skip
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
META_GROUP = 0x0002

# The index tags (PS3.6) with their dictionary VR
WANTED: dict[int, str] = {
    0x00080005: "CS",  # SpecificCharacterSet
    0x00080016: "UI",  # SOPClassUID
    0x00080018: "UI",  # SOPInstanceUID
    0x00080020: "DA",  # StudyDate
    0x00080030: "TM",  # StudyTime
    0x00080050: "SH",  # AccessionNumber
    0x00080060: "CS",  # Modality
    0x00080090: "PN",  # ReferringPhysicianName
    0x00081030: "LO",  # StudyDescription
    0x0008103E: "LO",  # SeriesDescription
    0x00100010: "PN",  # PatientName
    0x00100020: "LO",  # PatientID
    0x00100030: "DA",  # PatientBirthDate
    0x00100040: "CS",  # PatientSex
    0x00180015: "CS",  # BodyPartExamined
    0x00180050: "DS",  # SliceThickness
    0x0020000D: "UI",  # StudyInstanceUID
    0x0020000E: "UI",  # SeriesInstanceUID
    0x00200011: "IS",  # SeriesNumber
    0x00200013: "IS",  # InstanceNumber
    0x00200032: "DS",  # ImagePositionPatient
    0x00200037: "DS",  # ImageOrientationPatient
    0x00280002: "US",  # SamplesPerPixel
    0x00280008: "IS",  # NumberOfFrames
    0x00280010: "US",  # Rows
    0x00280011: "US",  # Columns
    0x00280030: "DS",  # PixelSpacing
    0x00280100: "US",  # BitsAllocated
}
_KEPT = frozenset(WANTED) | {_PIXEL_DATA}
_VR_CACHE: dict[int, str | None] = {}


class Unsure(Exception):
    """Leave this instance to the full reader."""


def _dictionary_vr(tag: int) -> str | None:
    try:
        return _VR_CACHE[tag]
    except KeyError:
        pass
    try:
        vr: str | None = str(dictionary_VR(tag))
    except KeyError:
        vr = None
    if len(_VR_CACHE) < 65536:
        _VR_CACHE[tag] = vr
    return vr


def _numbers_ok(value: bytes, vr: str) -> bool:
    """The check of ``reading._check_number_text``, as a yes/no."""
    for part in value.decode("ascii", errors="replace").split("\\"):
        text = part.strip(" \x00")
        if not text:
            continue
        try:
            number = float(text)
        except ValueError:
            return False
        if not math.isfinite(number) or (vr == "IS" and number != int(number)):
            return False
    return True


class ElementWalker:
    """One pass over a data set's elements; top-level index values kept as raw bytes."""

    def __init__(self, data: bytes, explicit: bool) -> None:
        self.data = data
        self.explicit = explicit
        self.top: dict[int, bytes] = {}
        self.pixel_length = -1
        self.depth = 0

    def header(self, pos: int, end: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, value length, value offset) of the element at ``pos``."""
        if end - pos < 8:
            raise Unsure
        group, element, length = _TAG_LENGTH.unpack_from(self.data, pos)
        tag = group << 16 | element
        if group == 0xFFFE or not self.explicit:
            return tag, None, length, pos + 8
        _, _, vr, short = _EXPLICIT_SHORT.unpack_from(self.data, pos)
        if vr not in VRS:
            raise Unsure
        if vr in _LONG_VRS:
            if end - pos < 12:
                raise Unsure
            (length,) = _UINT.unpack_from(self.data, pos + 8)
            return tag, vr, length, pos + 12
        return tag, vr, short, pos + 8

    def elements(self, pos: int, end: int, top: bool) -> int:
        """Walk elements from ``pos`` to ``end`` (or to an item delimiter when ``end`` is
        unbounded for an undefined-length item); return the position after them.

        The hot loop of ingest: the Explicit VR header is decoded inline (no call per
        element); rare cases (undefined lengths, the kept index values) are methods."""
        data = self.data
        data_end = len(data)
        end = min(end, data_end)
        explicit = self.explicit
        unpack_short = _EXPLICIT_SHORT.unpack_from
        last = -1
        while pos < end:
            if explicit and end - pos >= 12:
                group, element, vr_raw, length = unpack_short(data, pos)
                tag = group << 16 | element
                if group == 0xFFFE:
                    tag, vr_raw, length, start = self.header(pos, end)
                elif vr_raw in _LONG_VRS:
                    (length,) = _UINT.unpack_from(data, pos + 8)
                    start = pos + 12
                elif vr_raw in VRS:
                    start = pos + 8
                else:
                    raise Unsure
            else:
                tag, vr_raw, length, start = self.header(pos, end)
            if tag == _ITEM_END:
                if top or length != 0:
                    raise Unsure
                return start
            if tag >> 16 == 0xFFFE or tag <= last:
                raise Unsure
            last = tag
            vr = vr_raw.decode() if vr_raw is not None else _dictionary_vr(tag)
            if length == UNDEFINED_LENGTH:
                pos = self._undefined_length(tag, vr_raw, vr, start)
                continue
            stop = start + length
            if stop > data_end or stop > end:
                raise Unsure  # truncated: the full reader says so
            if vr == "SQ":
                self.sequence(start, stop)
            elif (vr == "IS" or vr == "DS") and not _numbers_ok(data[start:stop], vr):
                raise Unsure
            if top and tag in _KEPT:
                self._keep(tag, vr, start, stop)
            pos = stop
        if pos != end and end != data_end:
            raise Unsure
        return pos

    def _undefined_length(self, tag: int, vr_raw: bytes | None, vr: str | None, start: int) -> int:
        """An element of undefined length: only a sequence may be one here."""
        if tag == _PIXEL_DATA or vr_raw == b"UN":
            raise Unsure
        if vr != "SQ" and not (vr is None and not self.explicit):
            raise Unsure
        return self.sequence(start, None)

    def _keep(self, tag: int, vr: str | None, start: int, stop: int) -> None:
        """A top-level index value (of its dictionary VR), or the pixel data's length."""
        if tag == _PIXEL_DATA:
            self.pixel_length = stop - start
            return
        if vr != WANTED[tag]:
            raise Unsure
        self.top[tag] = self.data[start:stop]

    def sequence(self, pos: int, end: int | None) -> int:
        """Items of a sequence; ``end`` None: undefined length, up to the delimiter. Deeper than
        :data:`~appliance.dicom.limits.MAX_SEQUENCE_DEPTH`: the full reader refuses it."""
        if self.depth >= MAX_SEQUENCE_DEPTH:
            raise Unsure
        self.depth += 1
        try:
            return self._items(pos, end)
        finally:
            self.depth -= 1

    def _items(self, pos: int, end: int | None) -> int:
        data_end = len(self.data)
        limit = data_end if end is None else end
        while pos < limit:
            tag, _, length, start = self.header(pos, limit)
            if tag == _SEQUENCE_END:
                if end is not None or length != 0:
                    raise Unsure
                return start
            if tag != _ITEM:
                raise Unsure
            if length == UNDEFINED_LENGTH:
                pos = self.elements(start, data_end, top=False)
            else:
                stop = start + length
                if stop > limit:
                    raise Unsure
                self.elements(start, stop, top=False)
                pos = stop
        if end is None:
            raise Unsure  # no sequence delimiter before the end of the data
        return pos
