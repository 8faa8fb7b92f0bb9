"""Volumes over HTTP on real series ingested through the one ingest path: build through a job,
geometry and QA notes, NIfTI download, slices with square pixels and presets, thumbnails,
radiographs that are not volumes, the CLI export, the stable-series trigger and the audit."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from appliance.analysis.service import prepare_series
from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.studies.stability import Stable
from appliance.volumes import reconstruct as rc
from appliance.volumes.nifti import read_nifti
from appliance.volumes.service import current_volumes, key_image
from radiant import cli
from tests.dicom_files import instance_files

Headers = Callable[[str], dict[str, str]]
CT_TILT = "ct_ge_head_tilt18_varspacing"
MR_SAG = "mr_siemens_t1_sag_brain_35sl"
FMRI = "mr_ge_fmri_2series_4d"
DX = "xr_chest_cr_dx"
WAIT_S = 60.0  # bound on waiting for the job worker; never asserted on
INGEST = Actor.system("test")


def ingest(app: FastAPI, set_name: str) -> list[str]:
    """Ingest a set as the receiver would; our series ids, ordered by series number."""
    ctx: AppContext = app.state.ctx
    for path in instance_files(set_name):
        result = ctx.ingestor.ingest(path.read_bytes(), source="test", actor=INGEST)
        assert result.outcome.value == "stored", result.reason
    uids = {series_uid(p) for p in instance_files(set_name)}
    db = ctx.pool.get()
    marks = ", ".join("?" for _ in uids)
    rows = db.execute(
        f"SELECT id FROM series WHERE series_uid IN ({marks}) ORDER BY series_number",
        sorted(uids),
    ).fetchall()
    return [r[0] for r in rows]


def series_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def wait_job(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['status']} at {job['stage']}")
        time.sleep(0.02)


def build(client: TestClient, headers: dict[str, str], series_id: str) -> list[dict[str, Any]]:
    """POST, wait for the job, return the series' volumes."""
    response = client.post("/api/volumes", json={"series_id": series_id}, headers=headers)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["location"] == accepted["status_url"]
    job = wait_job(client, headers, accepted["job_id"])
    assert job["status"] == "done", job
    volumes = client.get(f"/api/series/{series_id}/volumes", headers=headers).json()
    assert [v["id"] for v in volumes] == job["result"]["volume_ids"]
    return list(volumes)


def actions(db: sqlite_utils.Database) -> list[str]:
    return [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]


def png_size(content: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(content)) as image:
        return image.size


def test_tilted_ct_builds_in_a_job_then_answers_201(
    client: TestClient, app: FastAPI, as_role: Headers, db: sqlite_utils.Database
) -> None:
    (series_id,) = ingest(app, CT_TILT)
    tech = as_role("technician")
    (volume,) = build(client, tech, series_id)
    assert volume["status"] == "ready" and volume["dtype"] == "int16"
    codes = [n["code"] for n in volume["qa_notes"]]
    assert codes == [rc.GANTRY_TILT_CORRECTED, rc.VARIABLE_SPACING_RESAMPLED]
    tilt = volume["qa_notes"][0]
    assert "Gantry tilt" in tilt["text"] and tilt["details"]["tilt_degrees"] == pytest.approx(
        18.5, abs=0.1
    )
    (expected,) = rc.build_volumes(instance_files(CT_TILT))
    assert volume["shape"] == list(expected.voxels.shape[::-1])
    assert volume["spacing"] == pytest.approx(list(expected.spacing))
    assert volume["origin"] == pytest.approx(list(expected.origin))
    assert np.allclose(volume["direction"], expected.direction)

    viewer = as_role("viewer")
    assert client.get(f"/api/volumes/{volume['id']}", headers=viewer).json() == volume
    again = client.post("/api/volumes", json={"series_id": series_id}, headers=tech)
    assert again.status_code == 201
    assert [v["id"] for v in again.json()["volumes"]] == [volume["id"]]
    refused = client.post("/api/volumes", json={"series_id": series_id}, headers=viewer)
    assert refused.status_code == 403
    missing = client.post("/api/volumes", json={"series_id": "nope"}, headers=tech)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"

    logged = actions(db)
    for action in ("volume.request", "job.create", "volume.build", "volume.list", "volume.read"):
        assert action in logged, action


def test_a_new_instance_makes_the_volumes_stale_and_a_rebuild_replaces_them(
    client: TestClient, app: FastAPI, as_role: Headers
) -> None:
    ctx: AppContext = app.state.ctx
    files = instance_files(MR_SAG)
    for path in files[:-1]:
        ctx.ingestor.ingest(path.read_bytes(), source="test", actor=INGEST)
    series_id = ctx.pool.get().execute("SELECT id FROM series").fetchone()[0]
    tech = as_role("technician")
    (first,) = build(client, tech, series_id)
    assert first["shape"][2] == 34
    ctx.ingestor.ingest(files[-1].read_bytes(), source="test", actor=INGEST)
    assert current_volumes(ctx.pool.get(), series_id) is None
    (second,) = build(client, tech, series_id)
    assert second["shape"][2] == 35 and second["id"] != first["id"]
    assert client.get(f"/api/volumes/{first['id']}", headers=tech).status_code == 404
    keys = list(ctx.store.iter_keys(f"volumes/{series_id}/"))
    assert keys == [f"volumes/{series_id}/{second['id']}.nii.gz"]  # the old file is gone


def test_4d_fmri_gives_ten_volumes_per_series(
    client: TestClient, app: FastAPI, as_role: Headers
) -> None:
    series = ingest(app, FMRI)
    assert len(series) == 2
    for series_id in series:
        volumes = build(client, as_role("radiologist"), series_id)
        assert [v["label"] for v in volumes] == [f"time {t} of 10" for t in range(1, 11)]
        assert all(v["status"] == "ready" and v["shape"] == [64, 64, 15] for v in volumes)
        assert all(rc.SPLIT_4D in [n["code"] for n in v["qa_notes"]] for v in volumes)
        assert [v["ordinal"] for v in volumes] == list(range(10))


def test_nifti_download_equals_the_library_result(
    client: TestClient, app: FastAPI, as_role: Headers, db: sqlite_utils.Database
) -> None:
    (series_id,) = ingest(app, MR_SAG)
    (volume,) = build(client, as_role("admin"), series_id)
    response = client.get(f"/api/volumes/{volume['id']}/nifti", headers=as_role("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    assert response.headers["x-content-sha256"] == hashlib.sha256(response.content).hexdigest()
    assert volume["sha256"] == response.headers["x-content-sha256"]
    loaded = read_nifti(response.content)
    (expected,) = rc.build_volumes(instance_files(MR_SAG))
    assert loaded.voxels.dtype == expected.voxels.dtype
    assert np.array_equal(loaded.voxels, expected.voxels)
    assert np.allclose(loaded.affine_lps, expected.affine, atol=1e-4)
    assert "volume.nifti" in actions(db)


def _extents_mm(volume: dict[str, Any]) -> dict[str, float]:
    """Physical extent of the volume along patient L-R, A-P and S-I (closest axes)."""
    direction = np.asarray(volume["direction"])
    extents = {}
    for axis, n, spacing in zip(range(3), volume["shape"], volume["spacing"], strict=True):
        patient = int(np.argmax(np.abs(direction[:, axis])))
        extents["LPS"[patient]] = n * spacing
    return extents


def test_slices_have_square_pixels_in_every_plane(
    client: TestClient, app: FastAPI, as_role: Headers
) -> None:
    (series_id,) = ingest(app, MR_SAG)
    viewer = as_role("viewer")
    (volume,) = build(client, viewer | as_role("technician"), series_id)
    extents = _extents_mm(volume)
    # the 35 sagittal slices, 4.8 mm apart, span 168 mm from right to left
    assert volume["shape"][2] == 35 and extents["L"] == pytest.approx(35 * 4.8, abs=0.01)
    expected = {  # (width, height) in mm of each displayed plane
        "axial": (extents["L"], extents["P"]),
        "coronal": (extents["L"], extents["S"]),
        "sagittal": (extents["P"], extents["S"]),
    }
    for plane, (width_mm, height_mm) in expected.items():
        response = client.get(
            f"/api/volumes/{volume['id']}/slice.png", params={"plane": plane}, headers=viewer
        )
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        width, height = png_size(response.content)
        pixel = float(response.headers["x-pixel-spacing-mm"])
        assert pixel == pytest.approx(min(volume["spacing"][:2]), rel=1e-5)
        assert abs(width - width_mm / pixel) <= 1 and abs(height - height_mm / pixel) <= 1, plane
        count = int(response.headers["x-slice-count"])
        assert int(response.headers["x-slice-index"]) == count // 2
    # not squashed: the right-left extent shows as 165 px, not as 35 slices
    axial = client.get(f"/api/volumes/{volume['id']}/slice.png", headers=viewer)
    assert png_size(axial.content) == (round(168 / 1.015625), 256)


def test_presets_change_a_ct_slice_and_bad_indices_are_422(
    client: TestClient, app: FastAPI, as_role: Headers, db: sqlite_utils.Database
) -> None:
    (series_id,) = ingest(app, CT_TILT)
    viewer = as_role("viewer")
    (volume,) = build(client, as_role("technician"), series_id)
    url = f"/api/volumes/{volume['id']}/slice.png"
    shown = {}
    for preset in ("auto", "soft", "lung", "bone", "brain"):
        response = client.get(
            url, params={"plane": "axial", "index": 30, "preset": preset}, headers=viewer
        )
        assert response.status_code == 200
        shown[preset] = response.content
        if preset == "auto":
            assert response.headers["x-window-source"] == "percentiles"
        else:
            assert response.headers["x-window-preset"] == preset
    assert len(set(shown.values())) == 5
    soft = client.get(url, params={"preset": "soft"}, headers=viewer)
    assert (soft.headers["x-window-center"], soft.headers["x-window-width"]) == ("40", "400")

    count = int(soft.headers["x-slice-count"])
    beyond = client.get(url, params={"plane": "axial", "index": count}, headers=viewer)
    assert beyond.status_code == 422
    assert beyond.headers["content-type"] == "application/problem+json"
    assert f"numbered 0 to {count - 1}" in beyond.json()["detail"]
    for params in ({"index": -1}, {"plane": "oblique"}, {"preset": "rainbow"}):
        assert client.get(url, params=params, headers=viewer).status_code == 422
    outcomes = db.execute(
        "SELECT outcome FROM audit_log WHERE action = 'volume.slice' ORDER BY id"
    ).fetchall()
    assert [o[0] for o in outcomes].count("refused") == 1  # the out-of-range index


def test_mr_ignores_ct_presets(client: TestClient, app: FastAPI, as_role: Headers) -> None:
    (series_id,) = ingest(app, MR_SAG)
    viewer = as_role("viewer")
    (volume,) = build(client, as_role("technician"), series_id)
    url = f"/api/volumes/{volume['id']}/slice.png"
    auto = client.get(url, params={"plane": "sagittal"}, headers=viewer)
    lung = client.get(url, params={"plane": "sagittal", "preset": "lung"}, headers=viewer)
    assert lung.headers["x-window-source"] == "percentiles" and lung.content == auto.content


def test_a_radiograph_is_not_applicable_with_its_reason(
    client: TestClient, app: FastAPI, as_role: Headers
) -> None:
    (series_id,) = ingest(app, DX)
    viewer = as_role("viewer")
    (volume,) = build(client, as_role("technician"), series_id)
    assert volume["status"] == "not_applicable" and volume["size"] is None
    assert "Projection radiograph (DX)" in volume["reason"]
    for path in (f"/api/volumes/{volume['id']}/nifti", f"/api/volumes/{volume['id']}/slice.png"):
        response = client.get(path, headers=viewer)
        assert response.status_code == 409 and "not_applicable" in response.json()["detail"]
    thumbnail = client.get(f"/api/series/{series_id}/thumbnail.png", headers=viewer)
    assert thumbnail.status_code == 200 and png_size(thumbnail.content) == (128, 128)


def test_thumbnails_before_and_after_the_build(
    client: TestClient, app: FastAPI, as_role: Headers, db: sqlite_utils.Database
) -> None:
    (series_id,) = ingest(app, MR_SAG)
    viewer = as_role("viewer")
    before = client.get(f"/api/series/{series_id}/thumbnail.png", headers=viewer)
    assert before.status_code == 200 and max(png_size(before.content)) == 128
    build(client, as_role("technician"), series_id)
    after = client.get(f"/api/series/{series_id}/thumbnail.png", headers=viewer)
    assert after.status_code == 200 and max(png_size(after.content)) == 128
    details = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'series.thumbnail' ORDER BY id"
    ).fetchall()
    assert "instance_id" in details[0][0] and "volume_id" in details[1][0]
    assert client.get("/api/series/nope/thumbnail.png", headers=viewer).status_code == 404


def _volume_listener(app: FastAPI) -> Callable[[Stable], None]:
    """The stability listener that queues volume builds (others follow it: metadata warm-up)."""
    (found,) = [
        listener for listener in app.state.services.stability.listeners
        if listener.__qualname__.startswith("auto_build_listener.")
    ]
    return found  # type: ignore[no-any-return]


def test_a_stable_series_gets_a_volume_job_for_volumetric_modalities_only(
    client: TestClient, app: FastAPI, as_role: Headers, db: sqlite_utils.Database
) -> None:
    (mr,) = ingest(app, MR_SAG)
    (dx,) = ingest(app, DX)
    listener = _volume_listener(app)
    listener(Stable("study", "whatever"))
    listener(Stable("series", dx))
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    listener(Stable("series", mr))
    (job_id, payload) = db.execute("SELECT id, payload FROM jobs").fetchone()
    assert payload == f'{{"series_id":"{mr}"}}'
    job = wait_job(client, as_role("viewer"), job_id)
    assert job["status"] == "done" and len(job["result"]["volume_ids"]) == 1
    listener(Stable("series", mr))  # current volumes: nothing more to do
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
    creator = db.execute("SELECT actor FROM audit_log WHERE action = 'job.create'").fetchone()[0]
    assert creator == "system:volumes"


def test_auto_volumes_can_be_switched_off(
    client: TestClient, app: FastAPI, db: sqlite_utils.Database
) -> None:
    (mr,) = ingest(app, MR_SAG)
    app.state.ctx.settings.auto_volumes = False
    _volume_listener(app)(Stable("series", mr))
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_cli_volume_build_writes_numbered_files_and_refuses_radiographs(
    client: TestClient,
    app: FastAPI,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    db: sqlite_utils.Database,
) -> None:
    ingest(app, FMRI)
    ingest(app, DX)
    data_dir = str(app.state.services.settings.data_dir)
    fmri_uid, dx_uid = series_uid(instance_files(FMRI)[0]), series_uid(instance_files(DX)[0])
    out = tmp_path / "out" / "fmri.nii.gz"
    out.parent.mkdir()
    assert cli.main(["volume", "build", fmri_uid, "--out", str(out), "--data-dir", data_dir]) == 0
    printed = capsys.readouterr().out
    files = sorted(out.parent.iterdir(), key=lambda p: int(p.name.split("_")[1].split(".")[0]))
    assert [p.name for p in files] == [f"fmri_{n}.nii.gz" for n in range(1, 11)]
    assert "split_4d:" in printed and "64 x 64 x 15 (time 1 of 10)" in printed
    assert read_nifti(files[0]).voxels.shape == (15, 64, 64)

    single = tmp_path / "dx.nii.gz"
    code = cli.main(["volume", "build", dx_uid, "--out", str(single), "--data-dir", data_dir])
    captured = capsys.readouterr()
    assert code == 1 and not single.exists()
    assert "not a volume: Projection radiograph (DX)" in captured.out
    assert "nothing written" in captured.err
    unknown = cli.main(["volume", "build", "1.2.3", "--out", str(single), "--data-dir", data_dir])
    assert unknown == 1 and "no series with SeriesInstanceUID" in capsys.readouterr().err
    assert actions(db).count("volume.export") == 2


def test_reads_are_audited_without_phi(
    client: TestClient, app: FastAPI, as_role: Headers, db: sqlite_utils.Database
) -> None:
    (series_id,) = ingest(app, MR_SAG)
    viewer = as_role("viewer")
    (volume,) = build(client, as_role("technician"), series_id)
    client.get(f"/api/volumes/{volume['id']}", headers=viewer)
    client.get(f"/api/volumes/{volume['id']}/slice.png", headers=viewer)
    logged = actions(db)
    for action in ("volume.build", "volume.read", "volume.slice", "volume.list"):
        assert action in logged
    text = " ".join(str(r) for r in db.execute("SELECT * FROM audit_log").fetchall())
    assert "crlab" not in text.lower()  # the set's patient id


def test_the_key_image_is_the_middle_slice_of_the_largest_volume(
    client: TestClient, app: FastAPI, as_role: Headers, db: sqlite_utils.Database
) -> None:
    (series_id,) = ingest(app, MR_SAG)
    (volume,) = build(client, as_role("technician"), series_id)
    ctx: AppContext = app.state.ctx
    key = key_image(ctx, series_id, INGEST)
    # acquired sagittally: the key image is the middle of the 35 sagittal slices
    assert (key.plane, key.index, key.count) == ("sagittal", 17, 35)
    same = client.get(
        f"/api/volumes/{volume['id']}/slice.png",
        params={"plane": "sagittal", "index": 17},
        headers=as_role("viewer"),
    )
    assert same.content == key.png
    assert "volume.key_image" in actions(db)


def test_the_analysis_reads_the_volume_the_key_image_shows(
    client: TestClient, app: FastAPI, as_role: Headers
) -> None:
    """A series split at a gap has two volumes, the smaller one first (ordinal 0): the key image
    and the analysis both take the largest, not the first ready one."""
    ctx: AppContext = app.state.ctx
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in instance_files(MR_SAG)]
    normal = np.cross(
        np.array(headers[0].ImageOrientationPatient[:3], dtype=float),
        np.array(headers[0].ImageOrientationPatient[3:], dtype=float),
    )
    along = sorted(
        zip(instance_files(MR_SAG), headers, strict=True),
        key=lambda item: float(np.dot(np.array(item[1].ImagePositionPatient, float), normal)),
    )
    kept = [path for n, (path, _) in enumerate(along) if n != 10]  # 10 slices, gap, 24 slices
    for path in kept:
        result = ctx.ingestor.ingest(path.read_bytes(), source="test", actor=INGEST)
        assert result.outcome.value == "stored", result.reason
    (series_id,) = [r[0] for r in ctx.pool.get().execute("SELECT id FROM series").fetchall()]
    volumes = build(client, as_role("technician"), series_id)
    assert [v["shape"][2] for v in volumes] == [10, 24]
    assert all(v["status"] == "ready" for v in volumes)
    prepared = prepare_series(ctx, series_id, None)
    key = key_image(ctx, series_id, INGEST)
    assert prepared.shape == tuple(volumes[1]["shape"][::-1])
    assert key.count == prepared.shape[0] == 24


def test_an_explicit_window_renders_a_volume_slice_and_bad_values_are_422(
    client: TestClient, app: FastAPI, as_role: Callable[[str], dict[str, str]],
    db: sqlite_utils.Database,
) -> None:
    (series_id,) = ingest(app, CT_TILT)
    viewer = as_role("viewer")
    (volume,) = build(client, as_role("technician"), series_id)
    url = f"/api/volumes/{volume['id']}/slice.png"
    soft = client.get(url, params={"index": 30, "preset": "soft"}, headers=viewer)
    same = client.get(url, params={"index": 30, "center": 40, "width": 400}, headers=viewer)
    other = client.get(url, params={"index": 30, "center": 100, "width": 50}, headers=viewer)
    assert same.status_code == 200 and same.headers["x-window-source"] == "explicit"
    assert (same.headers["x-window-center"], same.headers["x-window-width"]) == ("40", "400")
    assert same.content == soft.content  # the same window as the soft-tissue preset
    assert other.content != soft.content
    detail = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'volume.slice' ORDER BY id DESC"
    ).fetchone()[0]
    assert '"center":100.0' in detail and '"width":50.0' in detail
    for params in ({"center": 40}, {"width": 400}, {"center": 40, "width": 0},
                   {"center": 40, "width": "nan"}, {"center": 9e9, "width": 10}):
        bad = client.get(url, params=params, headers=viewer)
        assert bad.status_code == 422, params
        assert bad.headers["content-type"] == "application/problem+json"


def test_analysis_reads_the_new_volume_when_a_rebuild_replaces_the_one_it_chose(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analysis chose a volume; before it read the file, a rebuild of the series (the
    automatic build at stability) replaced the volumes and removed the old files (seen in a
    full run: FileNotFoundError, the analysis failed). It reads the replacing volume instead."""
    from appliance.analysis import preparation
    from appliance.volumes import service as volume_service

    ctx: AppContext = app.state.ctx
    (series_id,) = ingest(app, CT_TILT)
    (first,) = volume_service.build_for_series(ctx, series_id, INGEST)
    real_read = preparation.read_nifti
    reads: list[Path] = []

    def read_after_a_rebuild(path: Path) -> Any:
        if not reads:
            volume_service.build_for_series(ctx, series_id, INGEST)  # replaces, removes old
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(preparation, "read_nifti", read_after_a_rebuild)
    prepared = prepare_series(ctx, series_id, None)
    (now,) = current_volumes(ctx.pool.get(), series_id) or []
    assert now.id != first.id and len(reads) == 2
    assert reads[1].name == f"{now.id}.nii.gz" and prepared.shape[0] > 0
