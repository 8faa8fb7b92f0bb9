"""12-bit lossy JPEG (JPEG Extended, 1.2.840.10008.1.2.4.51) that pylibjpeg refuses (issue 16):
the NEMA ``*_JPLY`` stream with non-standard scan parameters was quarantined ("does not
decode", two tracebacks in the log) although dcmtk and GDCM decode it. GDCM, the last pydicom
plugin, decodes it: received over a real association it is stored, its pixels equal dcmtk's
``dcmdjpeg`` output, and the preview response names the decoder. Nothing leaks to stderr."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pynetdicom import AE, _config
from pynetdicom.sop_class import SecondaryCaptureImageStorage  # type: ignore[attr-defined]

from appliance.audit.models import Actor
from appliance.context import AppContext
from appliance.dicom import gdcm_fallback
from appliance.dicom.receiver import Receiver
from tests.dicom_files import DATA
from tests.unit import test_receiver as receiver_tests

frontend = receiver_tests.frontend
make_receiver = receiver_tests.make_receiver
served = receiver_tests.served

JPLY = DATA / "malformed" / "JPEG-lossy.dcm"  # pydicom's copy of NEMA NM1_JPLY (MIT)
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"


def _dcmdjpeg(tmp_path: Path) -> np.ndarray:
    """The pixels as dcmtk decodes them (the reference)."""
    if shutil.which("dcmdjpeg") is None:
        pytest.skip("dcmtk's dcmdjpeg is not installed")
    out = tmp_path / "dcmtk.dcm"
    subprocess.run(["dcmdjpeg", str(JPLY), str(out)], check=True, capture_output=True)
    return np.asarray(pydicom.dcmread(out).pixel_array)


def test_pylibjpeg_refuses_it_and_gdcm_decodes_it_as_dcmtk_does(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ds = pydicom.dcmread(JPLY)
    assert ds.file_meta.TransferSyntaxUID == JPEG_EXTENDED and ds.BitsStored == 12
    with pytest.raises(RuntimeError):
        ds.pixel_array_options(decoding_plugin="pylibjpeg")
        _ = ds.pixel_array
    ds = pydicom.dcmread(JPLY)
    gdcm_fallback.register()
    gdcm_fallback.mark_unused()
    decoded = np.asarray(ds.pixel_array)
    assert gdcm_fallback.last_decoder() == "gdcm"
    assert np.array_equal(decoded, _dcmdjpeg(tmp_path))
    # GDCM's JPEG library wrote nothing to our stderr ("Invalid SOS parameters ..."): all
    # there may be is the JSON log of the plugins that refused
    err = capfd.readouterr().err
    assert "SOS" not in err and "JPEG" not in err, err
    assert all(json.loads(line) for line in err.splitlines() if line.strip())


def test_received_over_dicom_it_is_stored_not_quarantined(
    served: tuple[Receiver, AppContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, ctx = served
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the bytes as they are
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(SecondaryCaptureImageStorage, [JPEG_EXTENDED])
    assoc = ae.associate("127.0.0.1", receiver.settings.dicom_port, ae_title="RADIANT")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(JPLY)
    finally:
        assoc.release()
    assert int(status.Status) == 0x0000, status
    db = ctx.pool.get()
    assert db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0


def test_the_preview_names_the_fallback_decoder(
    app: FastAPI, client: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    result = app.state.ctx.ingestor.ingest(
        JPLY.read_bytes(), source="usb", actor=Actor.system("test")
    )
    assert result.instance_id, result
    response = client.get(
        f"/api/instances/{result.instance_id}/preview.png", headers=as_role("viewer")
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Pixel-Decoder"] == "gdcm"
