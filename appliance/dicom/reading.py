"""Reading one DICOM instance and deciding whether it is fit to store.

An instance is refused (and quarantined by the caller) when it cannot be trusted as a medical
record: no File Meta or Transfer Syntax (PS3.10 7.1), missing identifying UIDs, elements whose
declared length runs past the end of the data (truncation), numeric strings that are not numbers
(IS/DS, PS3.5 6.2), pixel data shorter than its attributes say, compressed frames that do not
decode, or a JPEG 2000 codestream whose signedness contradicts PixelRepresentation.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import utils as pixel_utils
from pydicom.tag import BaseTag
from pydicom.uid import UID

from appliance.dicom import gdcm_fallback
from appliance.dicom.limits import Refused, check_structure

# 12-bit lossy JPEG that pylibjpeg refuses is decoded by GDCM (a pydicom plugin, tried last)
gdcm_fallback.register()

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_UNDEFINED = 0xFFFFFFFF
_J2K = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}


class Rejected(Exception):
    """The instance is unfit to store; ``reason`` says why in plain words (no PHI)."""

    def __init__(self, reason: str, sop_instance_uid: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sop_instance_uid = sop_instance_uid


@dataclass(frozen=True)
class InstanceInfo:
    """The tags the index keeps, read from one instance."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    patient_id: str
    patient_family: str | None = None
    patient_given: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_description: str | None = None
    referring_physician: str | None = None
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    body_part: str | None = None
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    image_position: list[float] | None = None
    image_orientation: list[float] | None = None
    pixel_spacing: list[float] | None = None
    slice_thickness: float | None = None
    number_of_frames: int | None = None
    notes: list[str] = field(default_factory=list)


def read_instance(data: bytes, *, check_pixels: bool = True) -> tuple[Dataset, InstanceInfo]:
    """Parse a DICOM Part 10 file and check it; raises :class:`Rejected` with a reason.
    The encoded structure is checked against :mod:`appliance.dicom.limits` first."""
    try:
        check_structure(data)
    except Refused as exc:
        raise Rejected(exc.reason) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        raise Rejected(
            "not a DICOM file: no preamble, 'DICM' prefix or File Meta Information (PS3.10 7.1)"
        ) from None
    except RecursionError:
        raise Rejected("the data nests too deeply to be read") from None
    except Exception as exc:  # pydicom raises many types on garbage
        raise Rejected(f"unreadable DICOM data ({exc.__class__.__name__})") from None
    try:
        sop_uid: str | None = _text(ds.get("SOPInstanceUID"))
    except Exception:  # converted lazily: an unknown VR raises here; check_dataset says why
        sop_uid = None
    try:
        info = check_dataset(ds, check_pixels=check_pixels)
    except Rejected as exc:
        exc.sop_instance_uid = exc.sop_instance_uid or sop_uid
        raise
    except RecursionError:
        raise Rejected("the data nests too deeply to be read", sop_uid) from None
    except Exception as exc:  # pydicom converts raw values lazily: garbage raises here too
        raise Rejected(f"unreadable DICOM data ({exc.__class__.__name__})", sop_uid) from None
    return ds, info


def _check_character_set(ds: Dataset) -> None:
    """Specific Character Set is CS (PS3.5 6.2): a control character inside it (a NUL that is
    not trailing padding) makes readers disagree on how the text is decoded."""
    value = ds.get("SpecificCharacterSet")
    values = [value] if isinstance(value, str) else list(value or [])
    for term in values:
        if any(ord(ch) < 0x20 for ch in str(term).rstrip("\x00 ")):
            raise Rejected("SpecificCharacterSet (0008,0005) holds a control character")


def check_dataset(ds: Dataset, *, check_pixels: bool = True) -> InstanceInfo:
    """Check a parsed dataset (with ``file_meta``) and extract the index tags."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise Rejected("the File Meta Information has no Transfer Syntax UID (0002,0010)")
    if str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
        raise Rejected("this is a DICOMDIR (a media index), not an instance to store")
    _check_elements(ds)
    _check_character_set(ds)
    uids = {}
    for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        value = _text(ds.get(keyword))
        if not value:
            raise Rejected(f"{keyword} is missing or empty")
        if len(value) > 64 or not all(ch.isdigit() or ch == "." for ch in value):
            raise Rejected(f"{keyword} is not a valid UID (PS3.5 9.1)")
        uids[keyword] = value
    if check_pixels:
        _check_pixels(ds)
    return _extract(ds, uids)


def _check_elements(ds: Dataset) -> None:
    """One pass over the raw elements, converting only sequences (cheap on large headers).

    - an element whose value is shorter than its declared length: the data was cut off;
    - IS and DS values (PS3.5 6.2) must be numbers, an IS also whole: later code computes
      with them.
    """
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement):
            value = raw.value
            if raw.length != _UNDEFINED and isinstance(value, bytes) and len(value) != raw.length:
                raise Rejected(
                    f"the data is truncated: element {tag} declares {raw.length} bytes but "
                    f"only {len(value)} follow"
                )
            vr = raw.VR or _dictionary_vr(tag)
            if vr in ("IS", "DS") and isinstance(value, bytes):
                _check_number_text(tag, vr, value)
            if vr != "SQ":
                continue
        elif tag == 0x7FE00010 or getattr(raw, "VR", None) != "SQ":
            continue
        try:
            elem = ds[tag]
        except Exception as exc:
            raise Rejected(f"element {tag} cannot be read ({exc.__class__.__name__})") from None
        if elem.VR == "SQ":
            for item in elem.value:
                _check_elements(item)


def _dictionary_vr(tag: BaseTag) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None  # private or unknown: no VR to check against


def _check_number_text(tag: BaseTag, vr: str, value: bytes) -> None:
    name = keyword_for_tag(tag) or str(tag)
    for part in value.decode("ascii", errors="replace").split("\\"):
        text = part.strip(" \x00")
        if not text:
            continue
        try:
            number = float(text)
        except ValueError:
            raise Rejected(f"{name} ({vr}) holds a value that is not a number") from None
        if not math.isfinite(number) or (vr == "IS" and number != int(number)):
            raise Rejected(f"{name} ({vr}) holds an invalid number")


def _expected_pixel_bytes(ds: Dataset) -> int:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits == 1:
        return math.ceil(rows * cols * frames * samples / 8)
    return rows * cols * frames * samples * (bits // 8)


def _check_pixels(ds: Dataset) -> None:
    if "PixelData" not in ds:
        return
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    raw = ds.get_item(0x7FE00010)
    value = raw.value if raw is not None else None
    if not isinstance(value, bytes | bytearray):
        raise Rejected("pixel data cannot be read")
    if not syntax.is_encapsulated:
        expected = _expected_pixel_bytes(ds)
        if expected == 0:
            raise Rejected("pixel data present but Rows, Columns or BitsAllocated is missing")
        if len(value) < expected:
            raise Rejected(
                f"pixel data is shorter than Rows x Columns x frames say "
                f"({len(value)} of {expected} bytes)"
            )
        return
    if str(syntax) in _J2K:
        _check_j2k_sign(ds, bytes(value))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _frame in pixel_utils.iter_pixels(ds):
                pass
    except Exception as exc:
        raise Rejected(
            f"compressed pixel data does not decode ({syntax.name}: {exc.__class__.__name__})"
        ) from None


def _check_j2k_sign(ds: Dataset, encapsulated: bytes) -> None:
    """The SIZ marker's Ssiz sign bit must agree with PixelRepresentation (PS3.5 8.2.4)."""
    try:
        first = next(
            pydicom.encaps.generate_frames(
                encapsulated, number_of_frames=ds.get("NumberOfFrames", 1)
            )
        )
    except Exception:
        raise Rejected("JPEG 2000 pixel data has no readable frame") from None
    params: dict[str, Any] = pixel_utils.get_j2k_parameters(first)
    if "is_signed" not in params:
        return
    signed = bool(int(ds.get("PixelRepresentation", 0) or 0))
    if bool(params["is_signed"]) != signed:
        raise Rejected(
            "JPEG 2000 codestream is "
            f"{'signed' if params['is_signed'] else 'unsigned'} but PixelRepresentation says "
            f"{'signed' if signed else 'unsigned'}: pixel values would be wrong"
        )


def _text(value: Any) -> str:
    return str(value).strip().rstrip("\x00") if value is not None else ""


def _opt_text(ds: Dataset, keyword: str, limit: int = 256) -> str | None:
    value = _text(ds.get(keyword))
    return value[:limit] or None


def _opt_int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _floats(ds: Dataset, keyword: str, count: int) -> list[float] | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    items = (
        list(value)
        if isinstance(value, list | tuple)
        or (hasattr(value, "__iter__") and not isinstance(value, str))
        else [value]
    )
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _extract(ds: Dataset, uids: dict[str, str]) -> InstanceInfo:
    notes: list[str] = []
    patient_id = _text(ds.get("PatientID"))[:64]
    name = ds.get("PatientName")
    family = given = None
    if name not in (None, ""):
        family = (_text(name.family_name) if hasattr(name, "family_name") else _text(name)) or None
        given = (_text(name.given_name) if hasattr(name, "given_name") else "") or None
    sex = _text(ds.get("PatientSex")).upper() or None
    if sex not in (None, "M", "F", "O"):
        notes.append("PatientSex is not M, F or O; ignored")
        sex = None
    birth = _dicom_date(_text(ds.get("PatientBirthDate")))
    frames = _opt_int(ds, "NumberOfFrames")
    position = _floats(ds, "ImagePositionPatient", 3)
    orientation = _floats(ds, "ImageOrientationPatient", 6)
    spacing = _floats(ds, "PixelSpacing", 2)
    thickness = _floats(ds, "SliceThickness", 1)
    return InstanceInfo(
        sop_instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        patient_id=patient_id,
        patient_family=family[:64] if family else None,
        patient_given=given[:64] if given else None,
        birth_date=birth,
        sex=sex,
        study_date=_text(ds.get("StudyDate"))[:8] or None,
        study_time=_text(ds.get("StudyTime"))[:16] or None,
        accession_number=_opt_text(ds, "AccessionNumber", 64),
        study_description=_opt_text(ds, "StudyDescription", 64),
        referring_physician=_opt_text(ds, "ReferringPhysicianName", 64),
        modality=_opt_text(ds, "Modality", 16),
        series_number=_opt_int(ds, "SeriesNumber"),
        series_description=_opt_text(ds, "SeriesDescription", 64),
        body_part=_opt_text(ds, "BodyPartExamined", 16),
        instance_number=_opt_int(ds, "InstanceNumber"),
        rows=_opt_int(ds, "Rows"),
        columns=_opt_int(ds, "Columns"),
        image_position=position,
        image_orientation=orientation,
        pixel_spacing=spacing,
        slice_thickness=thickness[0] if thickness else None,
        number_of_frames=frames,
        notes=notes,
    )


def _dicom_date(value: str) -> str | None:
    """DICOM DA (YYYYMMDD, PS3.5 6.2) to ISO 8601, or None when it is not a real date."""
    from datetime import date

    digits = value.replace(".", "")[:8]
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])).isoformat()
    except ValueError:
        return None
