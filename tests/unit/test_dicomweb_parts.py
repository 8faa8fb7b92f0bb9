"""DICOMweb pieces without a server: multipart/related both ways, Accept parsing, the view
window of the audit, and hostile QIDO/WADO input answered 4xx (never 5xx) by the app."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from appliance.dicomweb import multipart
from appliance.dicomweb.models import Part
from appliance.dicomweb.service import SeriesViews, choose_frames, choose_syntax


def test_multipart_round_trip_keeps_every_byte() -> None:
    parts = [Part("application/dicom", b"\r\n--x\r\n" + bytes(range(256))), Part("a/b", b"")]
    body = b"".join(multipart.encode(parts, "bnd"))
    back = multipart.decode(body, "bnd", "application/dicom")
    assert [(p.content_type, p.data) for p in back] == [(p.content_type, p.data) for p in parts]
    with pytest.raises(multipart.MalformedMultipart):
        multipart.decode(body[:-20], "bnd", "application/dicom")
    with pytest.raises(multipart.MalformedMultipart):
        multipart.boundary_of("multipart/related; type=application/dicom")


def test_accept_negotiation() -> None:
    ranges = multipart.parse_accept(
        'multipart/related; type="image/jls"; q=0.5, multipart/related; type=application/dicom'
    )
    assert [r.params.get("type") for r in ranges] == ["application/dicom", "image/jls"]
    assert choose_syntax(None) == "*"
    one = 'multipart/related; type="application/dicom"; transfer-syntax=1.2'
    assert choose_syntax(one) == "1.2"
    ls = "1.2.840.10008.1.2.4.80"
    assert choose_frames(None, ls) == (False, "application/octet-stream")
    star = "multipart/related; type=application/octet-stream; transfer-syntax=*"
    assert choose_frames(star, ls) == (True, "image/jls")
    assert choose_frames('multipart/related; type="image/jls"', ls) == (True, "image/jls")


def test_a_series_view_is_audited_once_per_window() -> None:
    views = SeriesViews(window_s=600)
    assert views.first("u1", "1.2") and not views.first("u1", "1.2")
    assert views.first("u2", "1.2") and views.first("u1", "1.3")
    assert SeriesViews(window_s=0).first("u", "s")


HOSTILE = [
    "/dicom-web/studies?includefield=SmallestImagePixelValue",
    "/dicom-web/studies?includefield=all&fuzzymatching=true&PatientName=%00%ff*",
    "/dicom-web/studies?StudyDate=99999999-00000000",
    "/dicom-web/studies?StudyTime=25",
    "/dicom-web/studies?limit=abc",
    "/dicom-web/studies?7FE10010=1",
    "/dicom-web/instances?InstanceNumber=x",
    "/dicom-web/series?0040A730.00080100=1",
    "/dicom-web/studies/1.2/series/3.4/instances/5.6/frames/0",
    "/dicom-web/studies/1.2/series/3.4/instances/5.6/frames/1,,2",
    "/dicom-web/studies/1.2/series/3.4/instances/5.6/rendered?window=nan,1",
    "/dicom-web/studies/1.2/series/3.4/instances/5.6/bulk/zzzzzzzz",
    "/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3&windowCenter=1",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_input_is_a_client_error(
    client: TestClient, as_role: Callable[[str], dict[str, str]], url: str
) -> None:
    answer = client.get(url, headers=as_role("radiologist"))
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if "/studies/1.2/" in url or "wado" in url or "limit=abc" in url or "7FE10010" in url:
        assert answer.status_code >= 400
