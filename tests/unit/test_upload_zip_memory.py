"""A zip upload's entries reach the ingest path without being held twice (issue 16): one dense
1,000 MiB entry took the RSS from 464 to 2,465 MiB, because the entry's inflated chunks were
kept in a list and then joined into a second copy. Here a real instance with 48 MiB of
incompressible pixel data, stored in a real zip, is expanded and ingested (real SQLite, real
object store) while tracemalloc records the peak of Python allocations: it stays well below
two copies of the entry."""

from __future__ import annotations

import os
import tracemalloc
import zipfile
from pathlib import Path

import pydicom

from appliance.app import prepare
from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.dicom.ingest import Outcome
from appliance.studies.upload_checks import UploadLimits
from appliance.studies.upload_session import UploadSession
from tests.dicom_files import instance_files

ROWS, COLUMNS = 4096, 6144  # 16-bit: 48 MiB of pixel data


def _dense_instance(tmp_path: Path) -> Path:
    """A real CR instance (PCIR set) given a large matrix of random (incompressible) pixels."""
    ds = pydicom.dcmread(instance_files("dicomdir_pcir_3patients_prior_current")[0])
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = os.urandom(ROWS * COLUMNS * 2)
    ds["PixelData"].VR = "OW"
    path = tmp_path / "dense.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_large_zip_entry_is_not_held_twice(tmp_path: Path, settings: Settings) -> None:
    dense = _dense_instance(tmp_path)
    size = dense.stat().st_size
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(dense, "STUDY/IMG0001")
    dense.unlink()
    ctx = prepare(settings)
    work = tmp_path / "work"
    work.mkdir()
    session = UploadSession(
        ingestor=ctx.ingestor,
        actor=Actor.system("test"),
        limits=UploadLimits.from_settings(settings),
        work_dir=work,
        boundary=b"x",
    )
    try:
        tracemalloc.start()
        try:
            session._expand(archive, "upload.zip")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        ctx.pool.close_all()
    (result,) = session.results
    assert result.outcome == Outcome.STORED.value, result
    assert peak < 1.5 * size, f"peak {peak / 2**20:.0f} MiB for an entry of {size / 2**20:.0f} MiB"
