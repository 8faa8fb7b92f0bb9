"""DICOMweb value types: media types, transfer syntaxes, store outcomes (PS3.18)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
MULTIPART = "multipart/related"

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE = frozenset({EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})

# PS3.18 Table 8.7.3-5: the media type of a frame in each compressed transfer syntax
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}

# PS3.18 Table 10.5.3-1 (Store Instances Response), Failure Reason (0008,1197)
FAILURE_PROCESSING = 0x0110
FAILURE_SOP_CLASS = 0x0122
FAILURE_OUT_OF_RESOURCES = 0xA700
FAILURE_DATASET_MISMATCH = 0xA900
FAILURE_CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class Located:
    """A stored instance a WADO request resolved to: its UIDs, syntax and file."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: Path


@dataclass(frozen=True)
class Part:
    """One body part of a multipart/related message."""

    content_type: str
    data: bytes
    location: str | None = None


@dataclass
class StoreOutcome:
    """What STOW-RS did with one body part (PS3.18 10.5.3)."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    stored: bool
    failure: int | None = None
    reason: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None


@dataclass
class StoreReport:
    outcomes: list[StoreOutcome] = field(default_factory=list)

    @property
    def status_code(self) -> int:
        """200 all stored, 202 some failed, 409 none stored (PS3.18 10.5.3 Table 10.5.3-1)."""
        stored = sum(1 for o in self.outcomes if o.stored)
        if stored == len(self.outcomes) and stored:
            return 200
        return 202 if stored else 409
