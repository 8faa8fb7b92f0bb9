"""A real `radiant serve` (HTTP and the DICOM receiver on free ports) with a signed-in
radiologist, for DICOMweb tests and the DICOMweb benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import RADIANT, clean_env, free_port, wait_http

PASSWORD = "dicomweb-test-password"


@dataclass
class Appliance:
    base: str
    dicom_port: int
    data_dir: Path
    token: str
    log: Path

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _user(data_dir: Path, cwd: Path, username: str, role: str) -> None:
    created = subprocess.run(
        [
            *RADIANT,
            "user",
            "create",
            "--username",
            username,
            "--role",
            role,
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ],
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
        env=clean_env(),
        cwd=cwd,
        check=False,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr


def token(base: str, username: str) -> str:
    answer = httpx.post(
        f"{base}/api/auth/token", data={"username": username, "password": PASSWORD}, timeout=30
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


@contextmanager
def appliance(tmp: Path, **env: str) -> Iterator[Appliance]:
    """Serve a fresh data dir; users ``radiologist`` (signed in) and ``viewer`` exist."""
    port, dicom_port = free_port(), free_port()
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, role in (
        ("radiologist", "radiologist"),
        ("viewer", "viewer"),
        ("tech", "technician"),
    ):
        _user(data_dir, tmp, name, role)
    base = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    environment = clean_env(
        RADIANT_DICOM_PORT=str(dicom_port),
        # the C-FIND peer of the tests (query/retrieve is answered for configured peers only)
        RADIANT_DICOM_PEERS=f"FINDER@127.0.0.1:{free_port()}",
        RADIANT_MIN_FREE_GB="0",
        RADIANT_AUTO_VOLUMES="false",
        **env,
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*RADIANT, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=environment,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_http(f"{base}/healthz", process)
            yield Appliance(base, dicom_port, data_dir, token(base, "radiologist"), log)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
