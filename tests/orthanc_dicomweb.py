"""Debian's Orthanc with its DICOMweb plugin on free ports of 127.0.0.1, as a DICOMweb peer:
a client of the box (its ``DicomWeb.Servers``) in tests, a server to compare with in benches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def binary() -> str | None:
    return shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")


def missing() -> str | None:
    """Why Orthanc with DICOMweb cannot run here (None when it can)."""
    if binary() is None:
        return "Orthanc is not installed (Debian package orthanc; ./just test installs it)"
    if not PLUGIN.is_file():
        return "Orthanc's DICOMweb plugin is not installed (Debian package orthanc-dicomweb)"
    return None


@dataclass
class Orthanc:
    base: str
    log: Path

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"


@contextmanager
def orthanc(rundir: Path, servers: dict[str, dict[str, Any]] | None = None) -> Iterator[Orthanc]:
    """Run Orthanc (storage in ``rundir``) until the block ends; ``servers`` are the DICOMweb
    servers its client may use (``{"box": {"Url": ..., "HttpHeaders": {...}}}``)."""
    exe = binary()
    assert exe is not None and PLUGIN.is_file(), missing()
    http_port, dicom_port = free_port(), free_port()
    rundir.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "peer-orthanc",
        "StorageDirectory": str(rundir / "storage"),
        "IndexDirectory": str(rundir / "index"),
        "Plugins": [str(PLUGIN)],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomPort": dicom_port,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": servers or {}},
    }
    path = rundir / "orthanc.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    log = rundir / "orthanc.log"
    base = f"http://127.0.0.1:{http_port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [exe, str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=rundir,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise AssertionError(
                        f"Orthanc exited: {log.read_text(errors='replace')[-2000:]}"
                    )
                try:
                    if httpx.get(f"{base}/system", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("Orthanc did not answer within 60 s")
                time.sleep(0.2)
            yield Orthanc(base, log)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
