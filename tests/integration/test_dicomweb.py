"""DICOMweb against the running appliance with real clients: dicomweb-client (QIDO, WADO,
STOW) and pynetdicom (C-FIND of what STOW stored)."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from tests import orthanc_dicomweb
from tests.dicomweb_server import Appliance, appliance, token

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data"
CT = sorted((DATA / "ct_ge_head_tilt18_varspacing").glob("*.dcm"))
MATRIX = sorted((DATA / "mr_siemens_transfer_syntax_matrix").glob("*.dcm"))
JPEG_LL = sorted((DATA / "mr_siemens_xa30_t1_jpeglossless_fragmented").glob("*.dcm"))[:3]


def _accented_study() -> bytes:
    """A real CT file given its own study, an accented name, an accession and a date."""
    ds = pydicom.dcmread(CT[0])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID = "Müller^Hélène", "FUZZ-1"
    ds.AccessionNumber, ds.StudyDate = "ACC-4711", "20200515"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with appliance(tmp_path_factory.mktemp("dicomweb")) as served:
        yield served


@pytest.fixture(scope="module")
def client(box: Appliance) -> DICOMwebClient:
    return DICOMwebClient(url=box.dicomweb, headers=box.headers)


@pytest.fixture(scope="module")
def stored(box: Appliance, client: DICOMwebClient) -> dict[str, bytes]:
    """Every test file STOWed as its original bytes (what the box must give back)."""
    files = {p.name + p.parent.name: p.read_bytes() for p in [*CT, *MATRIX, *JPEG_LL]}
    files["accented"] = _accented_study()
    answer = client._http_post_multipart_application_dicom(
        f"{box.dicomweb}/studies", list(files.values())
    )
    assert len(answer.ReferencedSOPSequence) == len(files)
    assert "FailedSOPSequence" not in answer
    return {pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID: b for b in files.values()}


def _uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_stow_stores_what_c_find_then_finds(box: Appliance, stored: dict[str, bytes]) -> None:
    study = _uids(CT[0])[0]
    ae = AE(ae_title="FINDER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", box.dicom_port, ae_title="RADIANT")
    assert assoc.is_established
    try:
        query = pydicom.Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study
        query.NumberOfStudyRelatedInstances = None
        found = [
            ds
            for status, ds in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
            if status and status.Status in (0xFF00, 0xFF01)
        ]
    finally:
        assoc.release()
    assert [str(ds.StudyInstanceUID) for ds in found] == [study]
    assert int(found[0].NumberOfStudyRelatedInstances) == len(CT)


def test_stow_refuses_a_malformed_file_with_a_reason(
    box: Appliance, client: DICOMwebClient
) -> None:
    bad = (DATA / "malformed" / "MR_truncated.dcm").read_bytes()
    answer = client._http_post_multipart_application_dicom(
        f"{box.dicomweb}/studies", [bad, CT[1].read_bytes()]
    )
    (failed,) = answer.FailedSOPSequence
    assert failed.FailureReason == 0xC000
    assert (
        failed.ReferencedSOPInstanceUID
        == pydicom.dcmread(io.BytesIO(bad), force=True).SOPInstanceUID
    )
    assert len(answer.ReferencedSOPSequence) == 1  # the good one (already there: no harm)
    # raw HTTP: 409 when nothing is stored, the reason in words in the Warning header
    boundary = "b0undary"
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + bad
    body += f"\r\n--{boundary}--\r\n".encode()
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    raw = httpx.post(
        f"{box.dicomweb}/studies", content=body, headers={**box.headers, "Content-Type": ctype}
    )
    assert raw.status_code == 409
    assert "truncated" in raw.headers["warning"]
    # a STOW into another study's URL refuses the instance (0xA900) and stores nothing
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    body += CT[2].read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    other = httpx.post(
        f"{box.dicomweb}/studies/1.2.3.4",
        content=body,
        headers={**box.headers, "Content-Type": ctype},
    )
    assert other.status_code == 409
    failed_item = pydicom.Dataset.from_json(other.json()).FailedSOPSequence[0]
    assert failed_item.FailureReason == 0xA900
    with sqlite3.connect(box.data_dir / "radiant.db") as db:
        # the same bad bytes sent twice are kept once, counted twice
        seen = db.execute(
            "SELECT seen_count FROM quarantine WHERE sha256 = ?",
            (hashlib.sha256(bad).hexdigest(),),
        ).fetchall()
    assert seen == [(2,)]


def _studies(client: DICOMwebClient, **filters: str) -> list[str]:
    fuzzy = filters.pop("fuzzy", None)
    found = client.search_for_studies(search_filters=filters, fuzzymatching=bool(fuzzy) or None)
    return sorted(r["0020000D"]["Value"][0] for r in found)


def test_qido_matching(client: DICOMwebClient, stored: dict[str, bytes]) -> None:
    ct, mr, jl = _uids(CT[0])[0], _uids(MATRIX[0])[0], _uids(JPEG_LL[0])[0]
    accented = next(
        str(pydicom.dcmread(io.BytesIO(b)).StudyInstanceUID)
        for b in stored.values()
        if b"FUZZ-1" in b
    )
    everything = sorted({ct, mr, jl, accented})
    assert _studies(client) == everything
    assert _studies(client, PatientID="crlab") == [mr]
    assert _studies(client, PatientName="stc*") == [mr]  # wildcard, case-insensitive PN
    assert _studies(client, PatientName="STC_TEST") == [mr]
    assert _studies(client, PatientName="hel*") == []
    assert _studies(client, PatientName="helene", fuzzy="1") == [accented]
    assert _studies(client, PatientName="MULL", fuzzy="1") == [accented]
    assert _studies(client, StudyDate="20140101-20141231") == [mr]
    assert _studies(client, StudyDate="20200515") == [accented]
    assert _studies(client, StudyDate="-20150101") == [mr]
    assert _studies(client, ModalitiesInStudy="CT") == sorted({ct, accented})
    assert _studies(client, AccessionNumber="ACC-4711") == [accented]
    assert _studies(client, AccessionNumber="ACC-0000") == []
    assert _studies(client, StudyInstanceUID=f"{ct},{mr}") == sorted([ct, mr])
    page = client.search_for_studies(limit=2, offset=1)
    assert [r["0020000D"]["Value"][0] for r in page] == [
        r["0020000D"]["Value"][0] for r in client.search_for_studies()
    ][1:3]
    (one,) = client.search_for_studies(search_filters={"PatientID": "crlab"})
    for tag in (
        "00080020",
        "00080050",
        "00080061",
        "00100010",
        "00100020",
        "00201206",
        "00201208",
        "00081190",
        "00080056",
    ):
        assert tag in one, tag
    assert one["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{mr}")
    series = client.search_for_series(study_instance_uid=ct)
    assert len(series) == 1 and series[0]["0020000E"]["Value"][0] == _uids(CT[0])[1]
    assert series[0]["00201209"]["Value"] == [len(CT)]
    instances = client.search_for_instances(
        study_instance_uid=ct, series_instance_uid=_uids(CT[0])[1], fields=["SliceThickness"]
    )
    assert len(instances) == len(CT)
    assert {"00080016", "00080018", "00280010", "00180050"} <= set(instances[0])
    assert len(client.search_for_instances(search_filters={"Modality": "MR"})) == len(MATRIX) + 3
    with pytest.raises(Exception, match="400"):
        client.search_for_studies(search_filters={"StudyDate": "2014-03-10"})


def test_wado_rs_retrieves_files_byte_identical(
    box: Appliance, client: DICOMwebClient, stored: dict[str, bytes]
) -> None:
    study, series, _ = _uids(CT[0])
    response = client._session.get(
        f"{box.dicomweb}/studies/{study}/series/{series}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert response.status_code == 200
    parts = list(client._decode_multipart_message(response, stream=False))
    assert sorted(parts) == sorted(p.read_bytes() for p in CT)
    # the parsed way, with the client's default Accept (no transfer syntax: as stored)
    mr_study, mr_series, _ = _uids(MATRIX[0])
    datasets = client.retrieve_series(mr_study, mr_series)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    for path in MATRIX:
        original = pydicom.dcmread(path)
        assert by_uid[original.SOPInstanceUID].file_meta.TransferSyntaxUID == (
            original.file_meta.TransferSyntaxUID
        )
        assert by_uid[original.SOPInstanceUID].PixelData == original.PixelData


@pytest.mark.parametrize("path", [*MATRIX, JPEG_LL[0]], ids=lambda p: p.parent.name[:6] + p.name)
def test_metadata_and_frames_decode_to_pydicoms_pixels(
    client: DICOMwebClient, stored: dict[str, bytes], path: Path
) -> None:
    study, series, sop = _uids(path)
    original = pydicom.dcmread(path)
    expected = original.pixel_array
    (meta,) = [
        m
        for m in client.retrieve_series_metadata(study, series)
        if m["00080018"]["Value"][0] == sop
    ]
    assert meta["00280010"]["Value"] == [original.Rows]
    assert meta["00083002"]["Value"] == [original.file_meta.TransferSyntaxUID]
    assert "BulkDataURI" in meta["7FE00010"]
    # frames decoded by the box to Explicit VR Little Endian (the client's default Accept)
    (frame,) = client.retrieve_instance_frames(study, series, sop, [1])
    dtype = expected.dtype.newbyteorder("<")
    got = np.frombuffer(frame, dtype=dtype).reshape(expected.shape)
    np.testing.assert_array_equal(got, expected)
    # the stored syntax as is: a compressed frame decodes (pydicom's decoders) to the same pixels
    ts = str(original.file_meta.TransferSyntaxUID)
    (raw,) = client.retrieve_instance_frames(
        study, series, sop, [1], media_types=(("application/octet-stream", "*"),)
    )
    if original.file_meta.TransferSyntaxUID.is_compressed:
        copy = pydicom.dcmread(path)
        copy.PixelData = pydicom.encaps.encapsulate([raw])
        np.testing.assert_array_equal(copy.pixel_array, expected)
    else:
        order = ">" if ts == "1.2.840.10008.1.2.2" else "<"
        as_stored = np.frombuffer(raw, dtype=expected.dtype.newbyteorder(order))
        np.testing.assert_array_equal(as_stored.reshape(expected.shape), expected)


def test_rendered_thumbnail_bulk_and_wado_uri(
    box: Appliance, client: DICOMwebClient, stored: dict[str, bytes]
) -> None:
    study, series, sop = _uids(CT[3])
    jpeg = client.retrieve_instance_rendered(study, series, sop, params={"window": "40,400"})
    assert jpeg[:2] == b"\xff\xd8"
    png = httpx.get(
        f"{box.dicomweb}/studies/{study}/series/{series}/thumbnail",
        headers={**box.headers, "Accept": "image/png"},
    )
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    # BulkDataURIs name the origin the client used (dicomweb-client rewrites them itself)
    url = f"{box.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
    meta = httpx.get(f"{url}/metadata", headers=box.headers).json()[0]
    assert meta["7FE00010"]["BulkDataURI"] == f"{url}/bulk/7FE00010"
    (pixels,) = client.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert pixels == pydicom.dcmread(CT[3]).PixelData
    uri = httpx.get(
        f"{box.base}/wado",
        headers=box.headers,
        params={
            "requestType": "WADO",
            "studyUID": study,
            "seriesUID": series,
            "objectUID": sop,
            "contentType": "application/dicom",
        },
    )
    assert uri.content == CT[3].read_bytes()
    image = httpx.get(
        f"{box.base}/wado",
        headers=box.headers,
        params={"requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": sop},
    )
    assert image.headers["content-type"] == "image/jpeg"


def test_errors_answer_4xx(box: Appliance, stored: dict[str, bytes]) -> None:
    study, series, sop = _uids(CT[0])
    url = f"{box.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
    h = box.headers
    assert httpx.get(f"{url}/frames/2", headers=h).status_code == 404
    assert httpx.get(f"{box.dicomweb}/studies/1.2.3", headers=h).status_code == 404
    assert httpx.get(f"{box.dicomweb}/studies/x.y", headers=h).status_code == 422
    assert httpx.get(url, headers={**h, "Accept": "text/html"}).status_code == 406
    assert (
        httpx.get(
            f"{url}/frames/1", headers={**h, "Accept": 'multipart/related; type="image/jls"'}
        ).status_code
        == 406
    )
    assert (
        httpx.get(f"{box.dicomweb}/studies", params={"Nonsense": "1"}, headers=h).status_code == 400
    )
    assert (
        httpx.get(f"{box.dicomweb}/studies", params={"limit": "-1"}, headers=h).status_code == 400
    )
    assert httpx.get(f"{box.dicomweb}/studies").status_code == 401
    viewer = {"Authorization": f"Bearer {token(box.base, 'viewer')}"}
    assert httpx.get(f"{box.dicomweb}/studies", headers=viewer).status_code == 200
    refused = httpx.post(
        f"{box.dicomweb}/studies",
        headers={
            **viewer,
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=x',
        },
        content=b"--x--",
    )
    assert refused.status_code == 403
    bad = httpx.post(
        f"{box.dicomweb}/studies", headers={**h, "Content-Type": "text/plain"}, content=b"hello"
    )
    assert bad.status_code == 415


def test_series_views_are_audited_once_not_per_frame(
    box: Appliance, client: DICOMwebClient, stored: dict[str, bytes]
) -> None:
    study, series, _ = _uids(MATRIX[0])
    fresh = DICOMwebClient(
        url=box.dicomweb, headers={"Authorization": f"Bearer {token(box.base, 'tech')}"}
    )
    fresh.retrieve_series_metadata(study, series)
    for path in MATRIX:
        fresh.retrieve_instance_frames(*_uids(path), [1])
    with sqlite3.connect(box.data_dir / "radiant.db") as db:
        rows = db.execute(
            "SELECT detail FROM audit_log WHERE action = 'dicomweb.series.view' AND actor = 'tech'"
        ).fetchall()
    assert len(rows) == 1
    assert json.loads(rows[0][0])["resource"] == "metadata"


def test_orthanc_retrieves_a_study_through_its_dicomweb_client(
    box: Appliance, stored: dict[str, bytes], tmp_path: Path
) -> None:
    if why := orthanc_dicomweb.missing():
        pytest.skip(why)
    servers = {"box": {"Url": f"{box.dicomweb}/", "HttpHeaders": box.headers}}
    study = _uids(MATRIX[0])[0]
    with orthanc_dicomweb.orthanc(tmp_path / "orthanc", servers) as peer:
        answer = httpx.post(
            f"{peer.base}/dicom-web/servers/box/retrieve",
            json={"Resources": [{"Study": study}]},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        ids = httpx.get(f"{peer.base}/instances").json()
        got = sorted(httpx.get(f"{peer.base}/instances/{i}/file").content for i in ids)
    assert got == sorted(p.read_bytes() for p in MATRIX)
