"""A fast path for :func:`appliance.dicom.reading.read_instance` on plain instances.

:func:`scan_instance` walks the encoded elements once with :mod:`struct` instead of building a
pydicom Dataset, applies the same checks as :mod:`appliance.dicom.reading` (no element runs past
the end of the data, IS/DS values are numbers, the four identifying UIDs are valid, uncompressed
pixel data is as long as Rows x Columns x frames say) and extracts the same index tags. It only
answers for the simple, common case: a Part 10 file in Implicit or Explicit VR Little Endian
whose index tags are ASCII, single-valued and of their dictionary VR. For anything else,
including every instance :mod:`reading` would refuse, it returns ``None`` and the caller uses
the full reader, which decides and gives the reason. So it never accepts what the full reader
refuses, and when it answers, its :class:`InstanceInfo` equals the full reader's
(``tests/unit/test_ingest_scan.py`` checks both on every test file and on crafted variants).
"""

from __future__ import annotations

import math
import re
import struct

from pydicom.datadict import dictionary_VR

from appliance.dicom.limits import MAX_SEQUENCE_DEPTH
from appliance.dicom.reading import MEDIA_STORAGE_DIRECTORY, InstanceInfo, _dicom_date

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNDEFINED = 0xFFFFFFFF
_TAG_LENGTH = struct.Struct("<HHI")
_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_UINT = struct.Struct("<I")
_UID_TEXT = re.compile(r"[0-9.]+")
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_VRS = _LONG_VRS | {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
    b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}  # fmt: skip
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_META_GROUP = 0x0002
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

# The index tags (PS3.6) with their dictionary VR
_WANTED: dict[int, str] = {
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
_VR_CACHE: dict[int, str | None] = {}


class _Unsure(Exception):
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


class _Walker:
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
            raise _Unsure
        group, element, length = _TAG_LENGTH.unpack_from(self.data, pos)
        tag = group << 16 | element
        if group == 0xFFFE or not self.explicit:
            return tag, None, length, pos + 8
        _, _, vr, short = _EXPLICIT_SHORT.unpack_from(self.data, pos)
        if vr not in _VRS:
            raise _Unsure
        if vr in _LONG_VRS:
            if end - pos < 12:
                raise _Unsure
            (length,) = _UINT.unpack_from(self.data, pos + 8)
            return tag, vr, length, pos + 12
        return tag, vr, short, pos + 8

    def elements(self, pos: int, end: int, top: bool) -> int:
        """Walk elements from ``pos`` to ``end`` (or to an item delimiter when ``end`` is
        unbounded for an undefined-length item); return the position after them."""
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
                elif vr_raw in _VRS:
                    start = pos + 8
                else:
                    raise _Unsure
            else:
                tag, vr_raw, length, start = self.header(pos, end)
            if tag == _ITEM_END:
                if top or length != 0:
                    raise _Unsure
                return start
            if tag >> 16 == 0xFFFE or tag <= last:
                raise _Unsure
            last = tag
            vr = vr_raw.decode() if vr_raw is not None else _dictionary_vr(tag)
            if length == _UNDEFINED:
                if tag == _PIXEL_DATA or vr_raw == b"UN":
                    raise _Unsure
                if vr != "SQ" and not (vr is None and not self.explicit):
                    raise _Unsure
                pos = self.sequence(start, None)
                continue
            stop = start + length
            if stop > data_end or stop > end:
                raise _Unsure  # truncated: the full reader says so
            if vr == "SQ":
                self.sequence(start, stop)
            elif (vr == "IS" or vr == "DS") and not _numbers_ok(data[start:stop], vr):
                raise _Unsure
            if top:
                if tag in _WANTED:
                    if vr != _WANTED[tag]:
                        raise _Unsure
                    self.top[tag] = data[start:stop]
                elif tag == _PIXEL_DATA:
                    self.pixel_length = length
            pos = stop
        if pos != end and end != data_end:
            raise _Unsure
        return pos

    def sequence(self, pos: int, end: int | None) -> int:
        """Items of a sequence; ``end`` None: undefined length, up to the delimiter. Deeper than
        :data:`~appliance.dicom.limits.MAX_SEQUENCE_DEPTH`: the full reader refuses it."""
        if self.depth >= MAX_SEQUENCE_DEPTH:
            raise _Unsure
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
                    raise _Unsure
                return start
            if tag != _ITEM:
                raise _Unsure
            if length == _UNDEFINED:
                pos = self.elements(start, data_end, top=False)
            else:
                stop = start + length
                if stop > limit:
                    raise _Unsure
                self.elements(start, stop, top=False)
                pos = stop
        if end is None:
            raise _Unsure  # no sequence delimiter before the end of the data
        return pos


def _text(raw: bytes | None) -> str:
    """The value as pydicom gives it (trailing NUL/space padding removed), then as
    ``reading._text`` trims it."""
    if raw is None:
        return ""
    if not raw.isascii() or b"\x1b" in raw or b"\\" in raw:
        raise _Unsure  # non-ASCII, code extensions or multi-valued: the full reader decodes
    return raw.decode("ascii").rstrip("\x00 ").strip().rstrip("\x00")


def _opt_text(raw: bytes | None, limit: int) -> str | None:
    return _text(raw)[:limit] or None


def _us(raw: bytes | None) -> int | None:
    if raw is None or len(raw) == 0:
        return None
    if len(raw) != 2:
        raise _Unsure
    return int(struct.unpack("<H", raw)[0])


def _is(raw: bytes | None) -> int | None:
    text = _text(raw)
    if not text:
        return None
    if not _INTEGER.fullmatch(text):
        raise _Unsure
    return int(text)


def _ds(raw: bytes | None, count: int) -> list[float] | None:
    if raw is None:
        return None
    if not raw.isascii():
        raise _Unsure
    whole = raw.decode("ascii").rstrip("\x00 ")
    if not whole:
        return None
    parts = whole.split("\\")
    if len(parts) != count:
        return None
    numbers: list[float] = []
    for part in parts:
        text = part.strip(" \x00")
        if not text:
            return None
        if not _DECIMAL.fullmatch(text) or text != part.strip():
            raise _Unsure
        numbers.append(float(text))
    return numbers


def _person(raw: bytes | None) -> tuple[str | None, str | None]:
    text = _text(raw)
    if "=" in text:
        raise _Unsure  # component groups: the full reader splits them
    if not text:
        return None, None
    parts = text.split("^")
    family = parts[0].strip().rstrip("\x00") or None
    given = (parts[1].strip().rstrip("\x00") if len(parts) > 1 else "") or None
    return family, given


def _meta(data: bytes) -> tuple[dict[int, bytes], int]:
    """File Meta Information elements (always Explicit VR LE) and where the data set starts."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise _Unsure
    walker = _Walker(data, explicit=True)
    pos = 132
    meta: dict[int, bytes] = {}
    while True:
        if len(data) - pos < 8:
            raise _Unsure
        if struct.unpack_from("<H", data, pos)[0] != _META_GROUP:
            return meta, pos
        tag, _, length, start = walker.header(pos, len(data))
        if length == _UNDEFINED or start + length > len(data):
            raise _Unsure
        meta[tag] = data[start : start + length]
        pos = start + length


def scan_instance(data: bytes) -> InstanceInfo | None:
    """The :class:`InstanceInfo` :func:`reading.read_instance` would return, or ``None`` when
    this fast path cannot be sure (then use the full reader)."""
    try:
        return _scan(data)
    except (_Unsure, UnicodeDecodeError, struct.error, ValueError):
        return None


def _uid(raw: bytes | None) -> str:
    value = _text(raw)
    if not value or len(value) > 64 or not _UID_TEXT.fullmatch(value):
        raise _Unsure  # the full reader refuses it with the reason
    return value


def _scan(data: bytes) -> InstanceInfo:
    meta, start = _meta(data)
    syntax = _text(meta.get(0x00020010))
    if syntax not in (IMPLICIT_LE, EXPLICIT_LE):
        raise _Unsure
    if _text(meta.get(0x00020002)) == MEDIA_STORAGE_DIRECTORY:
        raise _Unsure
    explicit = syntax == EXPLICIT_LE
    if len(data) - start < 8:
        raise _Unsure
    # pydicom switches encodings when the first element contradicts the transfer syntax
    looks_explicit = data[start + 4 : start + 6] in _VRS
    if looks_explicit != explicit:
        raise _Unsure
    walker = _Walker(data, explicit)
    walker.elements(start, len(data), top=True)
    top = walker.top
    uids = {
        "sop": _uid(top.get(0x00080018)),
        "class": _uid(top.get(0x00080016)),
        "study": _uid(top.get(0x0020000D)),
        "series": _uid(top.get(0x0020000E)),
    }
    rows, columns = _us(top.get(0x00280010)), _us(top.get(0x00280011))
    frames = _is(top.get(0x00280008))
    if walker.pixel_length >= 0:
        samples = _us(top.get(0x00280002)) or 1
        bits = _us(top.get(0x00280100)) or 0
        count = (rows or 0) * (columns or 0) * (frames or 1) * samples
        expected = math.ceil(count / 8) if bits == 1 else count * (bits // 8)
        if expected == 0 or walker.pixel_length < expected:
            raise _Unsure
    charset = top.get(0x00080005)
    _text(charset)  # ASCII-only character set names
    if charset is not None and any(byte < 0x20 for byte in charset.rstrip(b"\x00 ")):
        raise _Unsure  # refused by the full reader
    notes: list[str] = []
    family, given = _person(top.get(0x00100010))
    sex = _text(top.get(0x00100040)).upper() or None
    if sex not in (None, "M", "F", "O"):
        notes.append("PatientSex is not M, F or O; ignored")
        sex = None
    thickness = _ds(top.get(0x00180050), 1)
    referring = _text(top.get(0x00080090))
    if "=" in referring:
        raise _Unsure
    return InstanceInfo(
        sop_instance_uid=uids["sop"],
        sop_class_uid=uids["class"],
        study_uid=uids["study"],
        series_uid=uids["series"],
        transfer_syntax_uid=syntax,
        patient_id=_text(top.get(0x00100020))[:64],
        patient_family=family[:64] if family else None,
        patient_given=given[:64] if given else None,
        birth_date=_dicom_date(_text(top.get(0x00100030))),
        sex=sex,
        study_date=_text(top.get(0x00080020))[:8] or None,
        study_time=_text(top.get(0x00080030))[:16] or None,
        accession_number=_opt_text(top.get(0x00080050), 64),
        study_description=_opt_text(top.get(0x00081030), 64),
        referring_physician=referring[:64] or None,
        modality=_opt_text(top.get(0x00080060), 16),
        series_number=_is(top.get(0x00200011)),
        series_description=_opt_text(top.get(0x0008103E), 64),
        body_part=_opt_text(top.get(0x00180015), 16),
        instance_number=_is(top.get(0x00200013)),
        rows=rows,
        columns=columns,
        image_position=_ds(top.get(0x00200032), 3),
        image_orientation=_ds(top.get(0x00200037), 6),
        pixel_spacing=_ds(top.get(0x00280030), 2),
        slice_thickness=thickness[0] if thickness else None,
        number_of_frames=frames,
        notes=notes,
    )
