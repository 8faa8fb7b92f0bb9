"""`radiant serve` as a real process (granian, FastAPI, NiceGUI) on a free port of 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.servers import RADIANT, clean_env, free_port, running

pytestmark = pytest.mark.integration
PASSWORD = "integration-password"


def _serve(data_dir: Path, port: int, *extra: str) -> list[str]:
    return [*RADIANT, "serve", "--port", str(port), "--data-dir", str(data_dir), *extra]


def test_serves_health_docs_screen_and_api(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    # The environment says another port: the CLI flag must win.
    env = clean_env(RADIANT_HTTP_PORT=str(free_port()))
    base = f"http://127.0.0.1:{port}"
    with running(_serve(data_dir, port), env, tmp_path, f"{base}/healthz") as served:
        health = httpx.get(f"{base}/healthz").json()
        assert health["status"] == "ok" and health["mode"] == "offline"
        assert health["database"]["status"] == "ok" and health["database"]["schema_version"] >= 1
        docs = httpx.get(f"{base}/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = httpx.get(f"{base}/openapi.json").json()
        assert "/api/patients" in spec["paths"]
        # an unprovisioned box sends its own screen (a loopback client) to the first-boot form
        screen = httpx.get(f"{base}/")
        assert screen.status_code == 307 and screen.headers["location"] == "/first-boot"
        first_boot = httpx.get(f"{base}/first-boot")
        assert first_boot.status_code == 200 and "RadiantAI" in first_boot.text
        missing = httpx.get(f"{base}/api/nothing-here")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"

        created = subprocess.run(
            [
                *RADIANT,
                "user",
                "create",
                "--username",
                "admin",
                "--role",
                "admin",
                "--password-stdin",
                "--data-dir",
                str(data_dir),
            ],
            input=PASSWORD + "\n",
            text=True,
            capture_output=True,
            env=clean_env(),
            cwd=tmp_path,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        token = httpx.post(
            f"{base}/api/auth/token", data={"username": "admin", "password": PASSWORD}
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        patient = httpx.post(
            f"{base}/api/patients",
            headers=headers,
            json={"patient_id": "INT-1", "first_name": "Eva", "last_name": "Lund"},
        )
        assert patient.status_code == 201
        assert httpx.get(f"{base}/api/auth/me", headers=headers).json()["role"] == "admin"

    # Everything the server logged is JSON, and no PHI of the patient created above is in it.
    lines = served.output.strip().splitlines()
    assert lines and all(json.loads(line) for line in lines)
    assert "Lund" not in served.output and "INT-1" not in served.output
    key = data_dir / "secret_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first_key = key.read_text()
    # A second start reuses the data: same key, the patient is still there, tokens still valid.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(_serve(data_dir, port), clean_env(), tmp_path, f"{base}/healthz"):
        assert httpx.get(f"{base}/api/patients", headers=headers).json()["total"] == 1
    assert key.read_text() == first_key
    verify = subprocess.run(
        [*RADIANT, "audit", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert verify.returncode == 0 and "intact" in verify.stdout


@pytest.mark.parametrize(
    ("env", "args", "variable"),
    [
        ({"RADIANT_MODE": "sometimes"}, [], "RADIANT_MODE"),
        ({"RADIANT_HTTP_PORT": "70000"}, [], "RADIANT_HTTP_PORT"),
        ({"RADIANT_DICOM_PORT": "-4"}, [], "RADIANT_DICOM_PORT"),
        ({"RADIANT_DICOM_AE_TITLE": "WAY_TOO_LONG_AE_TITLE"}, [], "RADIANT_DICOM_AE_TITLE"),
        ({}, ["--data-dir", "/proc/radiant-cannot-be-here"], "RADIANT_DATA_DIR"),
    ],
)
def test_bad_configuration_stops_start_up_with_one_line(
    tmp_path: Path, env: dict[str, str], args: list[str], variable: str
) -> None:
    command = [*RADIANT, "serve"]
    if not args:
        command += ["--data-dir", str(tmp_path / "data")]
    # the port comes from the environment here, so that a bad RADIANT_HTTP_PORT is what is read
    env = {"RADIANT_HTTP_PORT": str(free_port()), **env}
    result = subprocess.run(
        [*command, *args],
        env=clean_env(**env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {variable}: ")
    assert "Traceback" not in result.stderr


def test_bad_cli_port_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RADIANT, "serve", "--port", "99999"],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "port must be 1-65535" in result.stderr


def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    migrate = subprocess.run(
        [*RADIANT, "migrate", "--data-dir", str(data_dir)],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode == 0 and "schema version" in migrate.stdout
    conn = sqlite3.connect(data_dir / "radiant.db")
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x', '2031-01-01')")
    conn.commit()
    conn.close()
    result = subprocess.run(
        _serve(data_dir, free_port()),
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "schema version 999" in result.stderr and "newer RadiantAI" in result.stderr
    assert "Traceback" not in result.stderr
