"""Depth, size and count limits on encoded data sets (issue 16): refused with a clear reason,
quarantined, never a RecursionError; no real test file is refused by them."""

from __future__ import annotations

import struct

import pytest

from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.dicom import limits
from appliance.dicom.ingest import Outcome
from appliance.dicom.limits import Refused, check_structure
from appliance.dicom.reading import Rejected, read_instance
from appliance.dicom.scan import scan_instance
from tests import hostile
from tests.dicom_files import DATA, NOT_GOOD

ACTOR = Actor.system("test")


def _private_elements(count: int) -> bytes:
    """``count`` private elements (0009,xxxx) inserted in tag order after the File Meta."""
    creator = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 4) + b"TEST"
    items = b"".join(
        struct.pack("<HH2sH", 0x0009, 0x1000 + (i % 0xFF) + 0x100 * (i // 0xFF), b"US", 2)
        + b"\x01\x00"
        for i in range(count)
    )
    data = hostile.base()
    pos = _first_element_after(data, 0x0009)
    return data[:pos] + creator + items + data[pos:]


def _first_element_after(data: bytes, group: int) -> int:
    (meta_length,) = struct.unpack_from("<I", data, 140)
    pos = 144 + meta_length
    while True:
        g, _, vr, short = struct.unpack_from("<HH2sH", data, pos)
        if g > group:
            return pos
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF"):
            (length,) = struct.unpack_from("<I", data, pos + 8)
            pos += 12 + length
        else:
            pos += 8 + short


def test_nested_sequences_beyond_the_depth_are_refused_without_recursion() -> None:
    data = hostile.nested_sequences(1000)
    assert scan_instance(data) is None  # the fast scan leaves it to the full reader
    with pytest.raises(Rejected, match=f"nested deeper than {limits.MAX_SEQUENCE_DEPTH}"):
        read_instance(data)
    check_structure(hostile.nested_sequences(limits.MAX_SEQUENCE_DEPTH))  # at the limit: fine
    read_instance(hostile.nested_sequences(limits.MAX_SEQUENCE_DEPTH))


def test_more_elements_than_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _private_elements(300)
    read_instance(data)  # within the default limit
    monkeypatch.setattr(limits, "MAX_ELEMENTS", 200)
    with pytest.raises(Refused, match="more than 200 data elements"):
        check_structure(data)
    with pytest.raises(Rejected, match="more than 200 data elements"):
        read_instance(data)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (hostile.length_beyond_input(), "element (0008,0030) declares 65520 bytes"),
        (hostile.truncated(1800), "element (7FE0,0010)"),
        (hostile.base()[:1000], "the data is truncated"),
    ],
)
def test_lengths_beyond_the_input_are_truncation(data: bytes, where: str) -> None:
    with pytest.raises(Rejected, match="truncated") as caught:
        read_instance(data)
    assert where in caught.value.reason


def test_a_cut_inside_an_element_header_is_truncation_not_a_missing_uid() -> None:
    """Cut anywhere inside an element header, the reason is truncation (it was 'StudyInstanceUID
    is missing or empty' when pydicom silently stopped at the cut)."""
    data = hostile.base()
    cuts = [cut for cut in range(300, 1700, 3) if not _at_boundary(data, cut)]
    for cut in cuts:
        with pytest.raises(Rejected) as caught:
            read_instance(data[:cut])
        assert "truncated" in caught.value.reason, (cut, caught.value.reason)


def _at_boundary(data: bytes, cut: int) -> bool:
    """True when ``cut`` falls exactly between two elements (no structure tells it was cut)."""
    (meta_length,) = struct.unpack_from("<I", data, 140)
    pos = 144 + meta_length
    while pos < cut:
        _, _, vr, short = struct.unpack_from("<HH2sH", data, pos)
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF"):
            (length,) = struct.unpack_from("<I", data, pos + 8)
            pos += 12 + length
        else:
            pos += 8 + short
    return pos == cut


def test_no_real_test_file_is_refused_by_the_limits() -> None:
    checked = 0
    for path in sorted(DATA.rglob("*")):
        if NOT_GOOD & set(path.relative_to(DATA).parts) or not path.is_file():
            continue
        data = path.read_bytes()
        if data[128:132] == b"DICM":
            check_structure(data)
            checked += 1
    assert checked > 300


def test_ingest_quarantines_the_nested_data_set(settings_ctx: AppContext) -> None:
    result = settings_ctx.ingestor.ingest(hostile.nested_sequences(1000), source="usb", actor=ACTOR)
    assert result.outcome is Outcome.QUARANTINED
    assert result.reason and "nested deeper" in result.reason


@pytest.fixture
def settings_ctx(settings: object) -> AppContext:
    from appliance.config import Settings
    from appliance.context import prepare

    assert isinstance(settings, Settings)
    return prepare(settings)
