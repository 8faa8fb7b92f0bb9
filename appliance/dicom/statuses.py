"""DIMSE status codes the receiver answers, and the status Datasets that carry them.

Storage statuses are those of PS3.4 B.2.3, Query/Retrieve ones PS3.4 C.4, the general ones
PS3.7 Annex C. An Error Comment (0000,0902) is LO: at most 64 characters (PS3.5 6.2).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from appliance.dicom.query import ERROR_COMMENT_MAX

SUCCESS = 0x0000
CANCEL = 0xFE00
PENDING = 0xFF00
OUT_OF_SPACE = 0xA700
STORE_FAILED = 0xA701
QUARANTINED = 0xC000
DATASET_MISMATCH = 0xA900  # the command's SOP Class/Instance UID is not the data set's
SUBOPERATIONS_FAILED = 0xA702  # every C-GET/C-MOVE sub-operation failed
SUBOPERATIONS_WARNING = 0xB000  # sub-operations complete, one or more failures
MOVE_DESTINATION_UNKNOWN = 0xA801
NOT_AUTHORIZED = 0x0124  # Refused: Not Authorized (PS3.7 C.5)


def status(code: int, comment: str | None = None) -> Dataset:
    """A status Dataset for a DIMSE response (PS3.7 Annex C); Error Comment is LO (64)."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:ERROR_COMMENT_MAX]
    return ds


def failed_list(uids: list[str]) -> Dataset:
    """The Identifier of a C-GET/C-MOVE failure or warning (PS3.4 C.4.2.1.4.2)."""
    ds = Dataset()
    ds.FailedSOPInstanceUIDList = uids
    return ds
