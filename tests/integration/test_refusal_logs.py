"""Expected refusals never write tracebacks to the log (issue 16): a real ``radiant serve``
(both DICOM front ends) and a real ``radiant import`` are given each class of refused input:
quarantined files over DICOM (pynetdicom as the peer), an association refused for its calling
AE title, a data set beyond the parser's limits, a bad web upload, a malformed STOW-RS part, a
media import with files that fail. Every log line is one JSON object; none holds a traceback
or an ``exception`` field; each refusal is logged once with ids and a reason."""

from __future__ import annotations

import io
import json
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlite_utils
from pynetdicom import AE, _config
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    NuclearMedicineImageStorage,
    RTDoseStorage,
    SecondaryCaptureImageStorage,
)

from appliance import logs
from appliance.app import prepare
from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.dicom.media import import_media
from tests import hostile
from tests.dicom_files import instance_files
from tests.dicomweb_server import appliance

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
MALFORMED = DATA / "malformed"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
# refused by the receiver's checks: bad IS value, undecodable J2K (a codec failure)
QUARANTINED = ["badVR.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"]


def _log_events(text: str, allowed_plain: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object (lines starting with ``allowed_plain`` are a
    CLI's messages to the person, not log lines); fails on a traceback anywhere."""
    assert "Traceback" not in text, text[-6000:]
    events = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(allowed_plain):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a log line that is not JSON: {line!r}")
        assert isinstance(event, dict), line
        events.append(event)
    for event in events:
        assert "exception" not in event and "exc_info" not in event, event
    return events


def _send(port: int, calling: str, paths: list[Path]) -> list[int]:
    ae = AE(ae_title=calling)
    for context in (
        ComputedRadiographyImageStorage,
        SecondaryCaptureImageStorage,
        NuclearMedicineImageStorage,
        RTDoseStorage,
    ):
        for syntax in (EXPLICIT_LE, "1.2.840.10008.1.2", *_jpeg_syntaxes()):
            ae.add_requested_context(context, [syntax])
    assoc = ae.associate("127.0.0.1", port, ae_title="RADIANT")
    if not assoc.is_established:
        return []
    try:
        return [int(assoc.send_c_store(path).Status) for path in paths]
    finally:
        assoc.release()


def _jpeg_syntaxes() -> list[str]:
    return ["1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.90"]


def _stow_body(boundary: str, parts: list[bytes]) -> bytes:
    out = io.BytesIO()
    for part in parts:
        out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        out.write(part + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


@pytest.mark.parametrize("frontend", ["native", "pynetdicom"])
def test_refusals_over_dicom_and_http_log_one_json_line_without_traceback(
    tmp_path: Path, frontend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pynetdicom sends each file's bytes as they are (it would parse them otherwise)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    good = instance_files("dicomdir_pcir_3patients_prior_current")[0]
    nested = hostile.REGRESSIONS / "nested_sequences_1000.dcm"
    bad = [MALFORMED / name for name in QUARANTINED]
    with appliance(
        tmp_path, RADIANT_DICOM_FRONTEND=frontend, RADIANT_DICOM_ALLOWED_AETS="TESTSCU"
    ) as box:
        statuses = _send(box.dicom_port, "TESTSCU", [*bad, nested, good])
        assert statuses[-1] == 0x0000 and all(s != 0 for s in statuses[:-1]), statuses
        assert _send(box.dicom_port, "INTRUDER", [good]) == []  # association refused
        headers = box.headers
        # a bad upload: a file that is not DICOM, a zip holding a malformed instance
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("a/badVR.dcm", (MALFORMED / "badVR.dcm").read_bytes())
        upload = httpx.post(
            f"{box.base}/api/studies/upload",
            headers=headers,
            files=[
                ("files", ("notes.txt", b"not dicom at all", "text/plain")),
                ("files", ("bad.zip", archive.getvalue(), "application/zip")),
                ("files", ("truncated.dcm", hostile.truncated(), "application/dicom")),
            ],
            timeout=60,
        )
        assert upload.status_code < 500, upload.text
        # a malformed STOW-RS part beside a good one
        boundary = "b0undary"
        stow = httpx.post(
            f"{box.dicomweb}/studies",
            headers={
                **headers,
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            },
            content=_stow_body(boundary, [b"\x00" * 300, hostile.length_beyond_input()]),
            timeout=60,
        )
        assert stow.status_code < 500, stow.text
        log_path = box.log
    events = _log_events(log_path.read_text(errors="replace"))

    def named(event: str) -> list[dict[str, Any]]:
        return [e for e in events if e.get("event") == event]

    # over DICOM: the three quarantined files and the one beyond the limits
    stored = named("store_quarantined")
    assert len(stored) == len(bad) + 1, events
    assert all(e["quarantine_id"] and e["reason"] for e in stored), stored
    assert any("nested deeper" in e["reason"] for e in stored)
    (association,) = named("association_refused")
    assert association["calling_ae"] == "INTRUDER" and association["reason"]
    # the upload: the text file rejected, the zip's malformed entry and the truncated file
    # quarantined
    assert [e["reason"] for e in named("upload_file_rejected")] == [
        json.loads(upload.text)["files"][0]["reason"]
    ]
    quarantined = named("upload_file_quarantined")
    assert len(quarantined) == 2 and all(e["quarantine_id"] and e["reason"] for e in quarantined)
    # STOW-RS: both parts refused, each with its failure code and reason
    parts = named("stow_part_refused")
    assert [e["part"] for e in parts] == [1, 2], events
    assert all(e["failure"].startswith("0x") and e["reason"] for e in parts)
    # pydicom's own log of the codec failures: one line each, the exception's class only
    assert all(set(e) >= {"error", "event"} for e in named("library_error"))


def test_media_import_failures_log_one_json_line_each_without_traceback(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    media = tmp_path / "STICK"
    media.mkdir()
    for name in QUARANTINED:
        shutil.copyfile(MALFORMED / name, media / name)
    (media / "truncated.dcm").write_bytes(hostile.truncated())
    shutil.copyfile(instance_files("dicomdir_pcir_3patients_prior_current")[0], media / "good.dcm")
    ctx = prepare(settings)
    capsys.readouterr()
    with warnings.catch_warnings():
        logs.configure("info")
        try:
            summary = import_media(ctx, media, actor=Actor.system("test"))
        finally:
            ctx.pool.close_all()
    events = _log_events(capsys.readouterr().err)
    assert len(summary.imported) == 1 and len(summary.quarantined) == len(QUARANTINED) + 1
    refused = [e for e in events if e.get("event") == "media_file_quarantined"]
    assert len(refused) == len(summary.quarantined), events
    assert all(e["import_id"] == summary.import_id and e["reason"] for e in refused)
    assert {e["quarantine_id"] for e in refused} == {
        str(r[0]) for r in settings_db(settings).execute("SELECT id FROM quarantine")
    }


def settings_db(settings: Settings) -> sqlite_utils.Database:
    return sqlite_utils.Database(settings.data_dir / "radiant.db")
