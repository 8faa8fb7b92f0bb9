"""What makes an instance unfit to store: one case per defect, on real files."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from appliance.dicom.reading import Rejected, read_instance
from tests.dicom_files import DATA, NOT_GOOD, instance_files

MALFORMED = {
    "DICOMDIR-nopatient": "DICOMDIR",
    "J2K_pixelrep_mismatch.dcm": "JPEG 2000 codestream is unsigned but PixelRepresentation",
    "JPEG2000-embedded-sequence-delimiter.dcm": "does not decode",
    "MR_truncated.dcm": "truncated",
    "badVR.dcm": "NumberOfFrames (IS) holds a value that is not a number",
    "meta_missing_tsyntax.dcm": "Transfer Syntax UID",
    "no_meta.dcm": "not a DICOM file",
    "rtplan_truncated.dcm": "truncated",
}


@pytest.mark.parametrize(("name", "says"), sorted(MALFORMED.items()))
def test_each_malformed_file_is_refused_with_its_reason(name: str, says: str) -> None:
    with pytest.raises(Rejected) as caught:
        read_instance((DATA / "malformed" / name).read_bytes())
    assert says in caught.value.reason


def test_the_12_bit_lossy_jpeg_pylibjpeg_refuses_is_accepted() -> None:
    """NEMA NM1_JPLY (JPEG Extended, 12-bit, non-standard scan parameters): GDCM decodes it."""
    _, info = read_instance((DATA / "malformed" / "JPEG-lossy.dcm").read_bytes())
    assert info.sop_instance_uid


def test_every_good_file_in_the_test_data_is_accepted() -> None:
    sets = [p.name for p in DATA.iterdir() if p.is_dir() and p.name not in NOT_GOOD]
    count = 0
    for set_name in sets:
        for path in instance_files(set_name):
            _, info = read_instance(path.read_bytes())
            count += 1
            assert info.sop_instance_uid and info.study_uid and info.series_uid
    assert count > 500


def test_index_tags_are_extracted() -> None:
    path = instance_files("ct_ge_head_tilt18_varspacing")[0]
    ds, info = read_instance(path.read_bytes())
    assert info.modality == "CT"
    assert info.rows == 512 and info.columns == 512
    assert info.image_position is not None and len(info.image_position) == 3
    assert info.image_orientation is not None and len(info.image_orientation) == 6
    assert info.pixel_spacing is not None and len(info.pixel_spacing) == 2
    assert info.transfer_syntax_uid == str(ds.file_meta.TransferSyntaxUID)
    assert info.patient_id == str(ds.PatientID)


def _mutated(**changes: object) -> bytes:
    """A real file with elements removed or replaced by raw values (as a faulty scanner would
    write them; pydicom refuses to assign invalid numbers)."""
    path = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
            continue
        tag = Tag(keyword)
        vr = dictionary_VR(tag)
        raw = str(value).encode("ascii")
        raw += b" " if len(raw) % 2 else b""
        ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"SOPInstanceUID": None}, "SOPInstanceUID is missing"),
        ({"StudyInstanceUID": ""}, "StudyInstanceUID is missing"),
        ({"SeriesInstanceUID": "1.2.abc"}, "SeriesInstanceUID is not a valid UID"),
        ({"SeriesInstanceUID": "1." + "2" * 70}, "SeriesInstanceUID is not a valid UID"),
        ({"SliceLocation": "12.5mm"}, "SliceLocation (DS)"),
        ({"InstanceNumber": "1.5"}, "InstanceNumber (IS) holds an invalid number"),
    ],
)
def test_identity_and_number_defects(changes: dict[str, object], says: str) -> None:
    with pytest.raises(Rejected) as caught:
        read_instance(_mutated(**changes))
    assert says in caught.value.reason


def test_pixel_data_shorter_than_declared() -> None:
    path = instance_files("mr_siemens_t1_sag_brain_35sl")[0]
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Rows + 10  # the attributes now promise more pixels than there are
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(Rejected, match="pixel data is shorter"):
        read_instance(out.getvalue())


def test_garbage_and_empty_input() -> None:
    for data in (b"", b"not dicom at all", b"\x00" * 128 + b"DICM" + b"\xff" * 50):
        with pytest.raises(Rejected):
            read_instance(data)
