"""The DICOM JSON model (PS3.18 F.2) with BulkDataURIs (F.2.6) for large binary values.

Values are written by pydicom's encoder; binary values above :data:`BULK_THRESHOLD` bytes and
every Pixel Data element become a ``BulkDataURI`` under the instance's URL as the client
reached it (``.../bulk/{tag}``). A nested element is addressed by its tag alone: the bulk route
takes the first element with that tag, depth first, which is the one the metadata named.
"""

from __future__ import annotations

from typing import Any

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from appliance.dicom import query as q
from appliance.dicomweb.models import NATIVE

BULK_THRESHOLD = 1024
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
AVAILABLE_TRANSFER_SYNTAX = "00083002"
RETRIEVE_URL = "00081190"
SPECIFIC_CHARACTER_SET = "00080005"
INSTANCE_AVAILABILITY = "00080056"


def instance_url(base: str, study: str, series: str | None = None, sop: str | None = None) -> str:
    """``{base}/studies/{study}[/series/{series}[/instances/{sop}]]`` (PS3.18 10.4.1)."""
    url = f"{base}/studies/{study}"
    if series:
        url += f"/series/{series}"
        if sop:
            url += f"/instances/{sop}"
    return url


def metadata(ds: Dataset, instance: str, transfer_syntax: str) -> dict[str, Any]:
    """One instance's metadata (``ds`` read without its pixels): every element, large binary
    values and the Pixel Data by BulkDataURI, plus
    Available Transfer Syntax UID (0008,3002) saying how the frames are stored."""

    def bulk(elem: DataElement) -> str:
        return f"{instance}/bulk/{int(elem.tag):08X}"

    out = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=bulk)
    if "Rows" in ds and "Columns" in ds:
        # read without its pixels: an image's Pixel Data is always by reference (PS3.18 F.2.6)
        compressed = transfer_syntax not in NATIVE
        vr = "OB" if compressed or int(ds.get("BitsAllocated", 16) or 16) <= 8 else "OW"
        out["7FE00010"] = {"vr": vr, "BulkDataURI": f"{instance}/bulk/7FE00010"}
    out[AVAILABLE_TRANSFER_SYNTAX] = {"vr": "UI", "Value": [transfer_syntax]}
    return dict(sorted(out.items()))


def match_json(match: q.Match, retrieve_url: str) -> dict[str, Any]:
    """A QIDO-RS match (PS3.18 F.2): the matched identifier's elements, Retrieve URL
    (0008,1190) and Instance Availability (0008,0056), without the C-FIND-only Query/Retrieve
    Level. Built from the index's values: pydicom's Dataset and ``to_json_dict`` took most of a
    page's time; values outside the plain cases below still go through pydicom."""
    out = {
        f"{tag:08X}": _element_json(tag, vr, value)
        for tag, vr, value in match.elements
        if tag != q.QUERY_RETRIEVE_LEVEL
    }
    if match.utf8:
        out[SPECIFIC_CHARACTER_SET] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    out[RETRIEVE_URL] = {"vr": "UR", "Value": [retrieve_url]}
    out[INSTANCE_AVAILABILITY] = {"vr": "CS", "Value": ["ONLINE"]}
    return dict(sorted(out.items()))


#: String VRs whose single value is its own JSON value (PS3.18 F.2.3).
_PLAIN = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UI"})
#: Integer VRs whose value is a JSON number.
_INTEGER = frozenset({"IS", "US", "UL", "SS", "SL"})


def _element_json(tag: int, vr: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"vr": vr}  # zero length: no Value (F.2.5)
    if vr == "PN" and isinstance(value, str):
        names = [_person_name(one) for one in value.split("\\")]
        return {"vr": vr, "Value": names} if names != [None] else {"vr": vr}
    if isinstance(value, str) and "\\" not in value and value.strip() == value and vr in _PLAIN:
        return {"vr": vr, "Value": [value]}
    if type(value) is int and vr in _INTEGER:
        return {"vr": vr, "Value": [value]}
    element = DataElement(tag, vr, value, validation_mode=config.IGNORE)
    return dict(element.to_json_dict(None, 0))


_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _person_name(value: str) -> dict[str, str] | None:
    """One PN value as its JSON object (PS3.18 F.2.2): the ``=``-separated component groups up
    to the last non-empty one; None (JSON null, F.2.5) for an empty value of several."""
    groups = value.split("=")[: len(_GROUPS)]
    while groups and not groups[-1]:
        groups.pop()
    return dict(zip(_GROUPS, groups, strict=False)) if groups else None


def find_element(ds: Dataset, tag: int) -> DataElement | None:
    """The first element with ``tag``, depth first (the order the metadata encoder walks)."""
    for elem in ds:
        if int(elem.tag) == tag:
            return elem
        if elem.VR == "SQ":
            for item in elem.value:
                found = find_element(item, tag)
                if found is not None:
                    return found
    return None
