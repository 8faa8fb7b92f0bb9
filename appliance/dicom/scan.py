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

from appliance.dicom.reading import MEDIA_STORAGE_DIRECTORY, InstanceInfo, _dicom_date
from appliance.dicom.scan_walk import META_GROUP, UNDEFINED_LENGTH, VRS, ElementWalker, Unsure

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UID_TEXT = re.compile(r"[0-9.]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _text(raw: bytes | None) -> str:
    """The value as pydicom gives it (trailing NUL/space padding removed), then as
    ``reading._text`` trims it."""
    if raw is None:
        return ""
    if not raw.isascii() or b"\x1b" in raw or b"\\" in raw:
        raise Unsure  # non-ASCII, code extensions or multi-valued: the full reader decodes
    return raw.decode("ascii").rstrip("\x00 ").strip().rstrip("\x00")


def _opt_text(raw: bytes | None, limit: int) -> str | None:
    return _text(raw)[:limit] or None


def _us(raw: bytes | None) -> int | None:
    if raw is None or len(raw) == 0:
        return None
    if len(raw) != 2:
        raise Unsure
    return int(struct.unpack("<H", raw)[0])


def _is(raw: bytes | None) -> int | None:
    text = _text(raw)
    if not text:
        return None
    if not _INTEGER.fullmatch(text):
        raise Unsure
    return int(text)


def _ds(raw: bytes | None, count: int) -> list[float] | None:
    if raw is None:
        return None
    if not raw.isascii():
        raise Unsure
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
            raise Unsure
        numbers.append(float(text))
    return numbers


def _person(raw: bytes | None) -> tuple[str | None, str | None]:
    text = _text(raw)
    if "=" in text:
        raise Unsure  # component groups: the full reader splits them
    if not text:
        return None, None
    parts = text.split("^")
    family = parts[0].strip().rstrip("\x00") or None
    given = (parts[1].strip().rstrip("\x00") if len(parts) > 1 else "") or None
    return family, given


def _meta(data: bytes) -> tuple[dict[int, bytes], int]:
    """File Meta Information elements (always Explicit VR LE) and where the data set starts."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Unsure
    walker = ElementWalker(data, explicit=True)
    pos = 132
    meta: dict[int, bytes] = {}
    while True:
        if len(data) - pos < 8:
            raise Unsure
        if struct.unpack_from("<H", data, pos)[0] != META_GROUP:
            return meta, pos
        tag, _, length, start = walker.header(pos, len(data))
        if length == UNDEFINED_LENGTH or start + length > len(data):
            raise Unsure
        meta[tag] = data[start : start + length]
        pos = start + length


def scan_instance(data: bytes) -> InstanceInfo | None:
    """The :class:`InstanceInfo` :func:`reading.read_instance` would return, or ``None`` when
    this fast path cannot be sure (then use the full reader)."""
    try:
        return _scan(data)
    except (Unsure, UnicodeDecodeError, struct.error, ValueError):
        return None


def _uid(raw: bytes | None) -> str:
    value = _text(raw)
    if not value or len(value) > 64 or not _UID_TEXT.fullmatch(value):
        raise Unsure  # the full reader refuses it with the reason
    return value


def _scan(data: bytes) -> InstanceInfo:
    meta, start = _meta(data)
    syntax = _text(meta.get(0x00020010))
    if syntax not in (IMPLICIT_LE, EXPLICIT_LE):
        raise Unsure
    if _text(meta.get(0x00020002)) == MEDIA_STORAGE_DIRECTORY:
        raise Unsure
    explicit = syntax == EXPLICIT_LE
    if len(data) - start < 8:
        raise Unsure
    # pydicom switches encodings when the first element contradicts the transfer syntax
    looks_explicit = data[start + 4 : start + 6] in VRS
    if looks_explicit != explicit:
        raise Unsure
    walker = ElementWalker(data, explicit)
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
            raise Unsure
    charset = top.get(0x00080005)
    _text(charset)  # ASCII-only character set names
    if charset is not None and any(byte < 0x20 for byte in charset.rstrip(b"\x00 ")):
        raise Unsure  # refused by the full reader
    notes: list[str] = []
    family, given = _person(top.get(0x00100010))
    sex = _text(top.get(0x00100040)).upper() or None
    if sex not in (None, "M", "F", "O"):
        notes.append("PatientSex is not M, F or O; ignored")
        sex = None
    thickness = _ds(top.get(0x00180050), 1)
    referring = _text(top.get(0x00080090))
    if "=" in referring:
        raise Unsure
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
