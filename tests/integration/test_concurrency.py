"""Concurrent requests against the real server: each request's transaction stays its own."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.servers import RADIANT, clean_env, free_port, running

pytestmark = pytest.mark.integration
PASSWORD = "concurrency-password"


def test_parallel_writes_and_reads_do_not_share_transactions(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    created = subprocess.run(
        [
            *RADIANT,
            "user",
            "create",
            "--username",
            "tech",
            "--role",
            "technician",
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ],
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
        env=clean_env(),
        check=False,
    )
    assert created.returncode == 0, created.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [*RADIANT, "serve", "--port", str(port), "--data-dir", str(data_dir)]
    env = clean_env(RADIANT_DICOM_PORT=str(free_port()), RADIANT_DICOM_HOST="127.0.0.1")
    with running(command, env, tmp_path, f"{base}/healthz"):
        token = httpx.post(
            f"{base}/api/auth/token", data={"username": "tech", "password": PASSWORD}
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}

        def work(n: int) -> list[int]:
            statuses = []
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                for k in range(10):
                    mrn = f"C-{n}-{k}"
                    created = client.post(
                        "/api/patients",
                        json={"patient_id": mrn, "first_name": "Par", "last_name": f"Allel{n}"},
                    )
                    statuses.append(created.status_code)
                    statuses.append(client.get("/api/patients", params={"search": mrn}).status_code)
            return statuses

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = [s for batch in pool.map(work, range(8)) for s in batch]
        assert results.count(201) == 80 and results.count(200) == 80, sorted(set(results))
        total = httpx.get(f"{base}/api/patients", headers=headers).json()["total"]
        assert total == 80
    verify = subprocess.run(
        [*RADIANT, "audit", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
