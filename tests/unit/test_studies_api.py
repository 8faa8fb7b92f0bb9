"""Upload real series over HTTP, then browse them: worklist, study, series, instances, the
original files and previews; audit rows for every read; viewers read but may not upload."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlite_utils
from fastapi.testclient import TestClient
from PIL import Image

from tests.dicom_files import DATA, instance_files

Headers = Callable[[str], dict[str, str]]
CT = "ct_ge_head_tilt18_varspacing"
MR = "mr_siemens_t1_sag_brain_35sl"


def post_files(
    client: TestClient, headers: dict[str, str], files: list[tuple[str, bytes]]
) -> httpx.Response:
    return client.post(
        "/api/studies/upload",
        headers=headers,
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )


def zip_of(paths: list[Path]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(path, f"MR/{path.name}")
    return out.getvalue()


def actions(db: sqlite_utils.Database) -> list[str]:
    return [row[0] for row in db.execute("SELECT action FROM audit_log ORDER BY id")]


@pytest.fixture
def uploaded(client: TestClient, as_role: Headers) -> dict[str, object]:
    """A CT series sent as files and an MR series as one zip, in one request."""
    ct = instance_files(CT)
    mr = instance_files(MR)
    files = [(p.name, p.read_bytes()) for p in ct] + [("mr.zip", zip_of(mr))]
    response = post_files(client, as_role("technician"), files)
    assert response.status_code == 201, response.text
    return {"report": response.json(), "ct": ct, "mr": mr}


def test_files_and_a_zip_are_stored_and_reported(
    uploaded: dict[str, object], db: sqlite_utils.Database
) -> None:
    report = uploaded["report"]
    assert isinstance(report, dict)
    assert report["counts"] == {"stored": 28 + 35, "duplicate": 0, "quarantined": 0, "rejected": 0}
    assert len(report["study_ids"]) == 2
    zipped = [f for f in report["files"] if f["archive"] == "mr.zip"]
    assert len(zipped) == 35 and all(f["name"].startswith("MR/") for f in zipped)
    assert all(
        f["sop_instance_uid"] and f["study_id"] in report["study_ids"] for f in report["files"]
    )
    # the ingestor audits each stored instance; the upload adds one summary row
    assert actions(db).count("dicom.store") == 63
    assert actions(db).count("study.upload") == 1
    detail = json.loads(
        db.execute("SELECT detail FROM audit_log WHERE action = 'study.upload'").fetchone()[0]
    )
    assert detail["counts"]["stored"] == 63 and sorted(detail["study_ids"]) == sorted(
        report["study_ids"]
    )


def test_uploading_again_gives_duplicates(
    client: TestClient, as_role: Headers, uploaded: dict[str, object]
) -> None:
    ct = uploaded["ct"]
    assert isinstance(ct, list)
    response = post_files(client, as_role("radiologist"), [(p.name, p.read_bytes()) for p in ct])
    assert response.status_code == 201
    body = response.json()
    assert body["counts"] == {"stored": 0, "duplicate": 28, "quarantined": 0, "rejected": 0}
    report = uploaded["report"]
    assert isinstance(report, dict)
    ct_study = {f["study_id"] for f in report["files"] if f["archive"] is None}
    assert set(body["study_ids"]) == ct_study  # duplicates still name their study


def test_worklist_study_series_and_instances(
    client: TestClient, as_role: Headers, uploaded: dict[str, object], db: sqlite_utils.Database
) -> None:
    viewer = as_role("viewer")
    page = client.get("/api/studies", headers=viewer).json()
    assert page["total"] == 2
    # newest first: the MR zip was ingested after the CT files
    assert [item["modalities"] for item in page["items"]] == [["MR"], ["CT"]]
    by_modality = {item["modalities"][0]: item for item in page["items"]}
    assert by_modality["CT"]["instance_count"] == 28 and by_modality["CT"]["series_count"] == 1
    mr_item = by_modality["MR"]
    assert mr_item["patient"]["patient_id"] == "crlab"
    assert mr_item["patient"]["sex"] == "M" and mr_item["patient"]["birth_date"] == "1970-06-06"

    only_ct = client.get("/api/studies", params={"modality": "ct"}, headers=viewer).json()
    assert [i["id"] for i in only_ct["items"]] == [by_modality["CT"]["id"]]
    found = client.get("/api/studies", params={"search": "CRLAB"}, headers=viewer).json()
    assert [i["id"] for i in found["items"]] == [mr_item["id"]]
    assert (
        client.get("/api/studies", params={"status": "stable"}, headers=viewer).json()["total"] == 0
    )
    second = client.get("/api/studies", params={"limit": 1, "offset": 1}, headers=viewer).json()
    assert [i["id"] for i in second["items"]] == [by_modality["CT"]["id"]]

    study = client.get(f"/api/studies/{mr_item['id']}", headers=viewer).json()
    assert study["patient"]["id"] == mr_item["patient"]["id"]
    assert [s["instance_count"] for s in study["series"]] == [35]
    series = client.get(f"/api/studies/{mr_item['id']}/series", headers=viewer).json()
    assert [s["id"] for s in series] == [s["id"] for s in study["series"]]
    instances = client.get(f"/api/series/{series[0]['id']}/instances", headers=viewer).json()
    assert [i["instance_number"] for i in instances] == list(range(1, 36))
    assert all(i["slice_position"] is not None and i["frames"] == 1 for i in instances)

    mine = client.get(f"/api/studies/patient/{mr_item['patient']['id']}", headers=viewer).json()
    assert [s["id"] for s in mine["studies"]] == [mr_item["id"]]

    logged = actions(db)
    for action in ("study.list", "study.read", "series.list", "instance.list"):
        assert action in logged
    # ids only: no patient name, MRN or search text in the audit log
    text = " ".join(str(r) for r in db.execute("SELECT * FROM audit_log").fetchall())
    assert "crlab" not in text.lower() and "CRLAB" not in text


def test_ct_instances_order_and_file_bytes(
    client: TestClient, as_role: Headers, uploaded: dict[str, object], db: sqlite_utils.Database
) -> None:
    viewer = as_role("viewer")
    study = next(
        s
        for s in client.get("/api/studies", headers=viewer).json()["items"]
        if s["modalities"] == ["CT"]
    )
    series_id = client.get(f"/api/studies/{study['id']}/series", headers=viewer).json()[0]["id"]
    instances = client.get(f"/api/series/{series_id}/instances", headers=viewer).json()
    assert [i["instance_number"] for i in instances] == list(range(1, 29))
    positions = [i["slice_position"] for i in instances]
    assert positions == sorted(positions) or positions == sorted(positions, reverse=True)

    originals = {hashlib.sha256(p.read_bytes()).hexdigest() for p in instance_files(CT)}
    first = client.get(f"/api/instances/{instances[0]['id']}/file", headers=viewer)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/dicom"
    assert int(first.headers["content-length"]) == len(first.content)
    digest = hashlib.sha256(first.content).hexdigest()
    assert digest in originals and digest == first.headers["x-content-sha256"]
    assert digest == instances[0]["sha256"]
    assert "instance.file" in actions(db)


def test_ct_preview_presets(
    client: TestClient, as_role: Headers, uploaded: dict[str, object], db: sqlite_utils.Database
) -> None:
    viewer = as_role("viewer")
    study = next(
        s
        for s in client.get("/api/studies", headers=viewer).json()["items"]
        if s["modalities"] == ["CT"]
    )
    series_id = client.get(f"/api/studies/{study['id']}/series", headers=viewer).json()[0]["id"]
    instance = client.get(f"/api/series/{series_id}/instances", headers=viewer).json()[10]
    images = {}
    for preset in ("lung", "bone", "auto"):
        response = client.get(
            f"/api/instances/{instance['id']}/preview.png",
            params={"preset": preset},
            headers=viewer,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "PNG" and image.size == (512, 512) and image.mode == "L"
        images[preset] = np.asarray(image)
    assert response.headers["x-window-source"] == "window"  # auto: the file's own window
    assert not np.array_equal(images["lung"], images["bone"])
    lung = client.get(
        f"/api/instances/{instance['id']}/preview.png", params={"preset": "lung"}, headers=viewer
    )
    assert (
        lung.headers["x-window-preset"],
        lung.headers["x-window-center"],
        lung.headers["x-window-width"],
    ) == ("lung", "-600", "1500")
    assert actions(db).count("instance.preview") == 4

    bad = client.get(
        f"/api/instances/{instance['id']}/preview.png", params={"frame": 1}, headers=viewer
    )
    assert bad.status_code == 422 and "frame 1" in bad.json()["detail"]
    unknown = client.get(
        f"/api/instances/{instance['id']}/preview.png", params={"preset": "x"}, headers=viewer
    )
    assert unknown.status_code == 422


def test_a_ct_preset_on_mr_falls_back_to_auto(
    client: TestClient, as_role: Headers, uploaded: dict[str, object]
) -> None:
    viewer = as_role("viewer")
    study = next(
        s
        for s in client.get("/api/studies", headers=viewer).json()["items"]
        if s["modalities"] == ["MR"]
    )
    series_id = client.get(f"/api/studies/{study['id']}/series", headers=viewer).json()[0]["id"]
    instance = client.get(f"/api/series/{series_id}/instances", headers=viewer).json()[17]
    url = f"/api/instances/{instance['id']}/preview.png"
    lung = client.get(url, params={"preset": "lung"}, headers=viewer)
    auto = client.get(url, headers=viewer)
    assert lung.status_code == auto.status_code == 200
    assert "x-window-preset" not in lung.headers
    assert lung.content == auto.content


def test_unknown_ids_are_404_and_audited(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    viewer = as_role("viewer")
    for path in (
        "/api/studies/nope",
        "/api/studies/nope/series",
        "/api/studies/patient/nope",
        "/api/series/nope/instances",
        "/api/instances/nope/file",
        "/api/instances/nope/preview.png",
    ):
        response = client.get(path, headers=viewer)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    outcomes = db.execute("SELECT COUNT(*) FROM audit_log WHERE outcome = 'not_found'").fetchone()[
        0
    ]
    assert outcomes == 6


def test_viewers_may_not_upload(client: TestClient, as_role: Headers) -> None:
    path = instance_files(CT)[0]
    response = post_files(client, as_role("viewer"), [(path.name, path.read_bytes())])
    assert response.status_code == 403
    assert client.get("/api/studies", headers=as_role("viewer")).json()["total"] == 0
    anonymous = post_files(client, {}, [(path.name, path.read_bytes())])
    assert anonymous.status_code == 401


def test_the_transfer_syntax_matrix_renders_identically(
    client: TestClient, as_role: Headers
) -> None:
    """The same image in 9 encodings (see tests/data/mr_siemens_transfer_syntax_matrix): the
    JPEG Lossless, JPEG-LS, JPEG 2000 and RLE files must look exactly like the native ones."""
    files = instance_files("mr_siemens_transfer_syntax_matrix")
    assert len(files) == 9
    tech = as_role("technician")
    report = post_files(client, tech, [(p.name, p.read_bytes()) for p in files]).json()
    assert report["counts"]["stored"] == 9
    pngs = []
    for item in report["files"]:
        response = client.get(f"/api/instances/{item['instance_id']}/preview.png", headers=tech)
        assert response.status_code == 200, (item["name"], response.text)
        pngs.append(np.asarray(Image.open(io.BytesIO(response.content))))
    assert pngs[0].shape == (384, 384)
    for name, pixels in zip((f["name"] for f in report["files"]), pngs, strict=True):
        assert np.array_equal(pixels, pngs[0]), name


def test_a_multiframe_instance_serves_each_frame(client: TestClient, as_role: Headers) -> None:
    path = DATA / "mr_enhanced_multiframe" / "siemens_xa10" / "6_1.dcm"
    tech = as_role("technician")
    report = post_files(client, tech, [(path.name, path.read_bytes())]).json()
    instance_id = report["files"][0]["instance_id"]
    url = f"/api/instances/{instance_id}/preview.png"
    first = client.get(url, params={"frame": 0}, headers=tech)
    last = client.get(url, params={"frame": 5}, headers=tech)
    assert first.status_code == last.status_code == 200
    assert last.headers["x-frame"] == "5" and last.headers["x-frame-count"] == "6"
    assert first.content != last.content
    beyond = client.get(url, params={"frame": 6}, headers=tech)
    assert beyond.status_code == 422
    assert beyond.json()["detail"].startswith("frame 6 does not exist")
