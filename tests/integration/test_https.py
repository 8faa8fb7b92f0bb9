"""`radiant serve` over HTTPS (granian's TLS) with the box's certificate, checked by real
clients: curl with ``--cacert`` and httpx with the certificate as the only trust anchor.
Also: plain HTTP beyond loopback refused at start-up, security headers and cookie flags, the
per-address sign-in lock over real TCP (127.0.0.1 and 127.0.0.2), the shutdown checkpoint."""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.servers import RADIANT, clean_env, free_port, running

pytestmark = pytest.mark.integration
PASSWORD = "https-integration-password"


def _radiant(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [*RADIANT, *args, "--data-dir", str(data_dir)],
        input=stdin,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_screen_and_api_over_https_with_the_box_certificate(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shown = _radiant(data_dir, "tls", "renew")
    fingerprint = re.search(r"sha256 fingerprint: ([0-9A-F:]{95})", shown)
    assert fingerprint is not None
    cert = data_dir / "tls" / "box.crt"
    device = _radiant(data_dir, "device", "show")
    assert f"TLS certificate sha256 fingerprint: {fingerprint.group(1)}" in device
    _radiant(
        data_dir, "user", "create", "--username", "chief", "--role", "admin", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    port = free_port()
    env = clean_env(
        # HTTPS on 127.0.0.1 too (the default, auto, keeps loopback in plain HTTP), with the
        # box's own certificate (made above).
        RADIANT_HTTP_TLS="on",
        RADIANT_DICOM_HOST="127.0.0.1",
        RADIANT_DICOM_PORT=str(free_port()),
        RADIANT_MEDIA_ROOTS=str(tmp_path / "media"),
    )
    trust = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    args = [*RADIANT, "serve", "--port", str(port), "--data-dir", str(data_dir)]
    with running(args, env, tmp_path, f"{base}/healthz", verify=trust) as served:
        # curl trusts only the box certificate, by IP address and by name.
        for url in (f"{base}/healthz", f"https://localhost:{port}/healthz"):
            answer = _curl("--cacert", str(cert), "-D", "-", url)
            assert answer.returncode == 0, answer.stderr
            head = answer.stdout.lower()
            assert "200" in head.splitlines()[0]
            assert "strict-transport-security: max-age=31536000" in head
            assert "frame-ancestors 'none'" in head
            assert "x-content-type-options: nosniff" in head
            assert "referrer-policy: no-referrer" in head
        # Without the certificate as trust anchor, curl refuses the connection (exit 60).
        assert _curl(f"{base}/healthz").returncode == 60
        # Plain HTTP to the TLS port gets no HTTP answer.
        assert _curl(f"http://127.0.0.1:{port}/healthz").returncode != 0
        # The screen's session cookie: Secure, HttpOnly, SameSite=Strict, 12 h.
        login = _curl("--cacert", str(cert), "-D", "-", "-o", "/dev/null", f"{base}/login")
        cookie = next(
            line for line in login.stdout.splitlines() if line.lower().startswith("set-cookie:")
        ).lower()
        for flag in ("secure", "httponly", "samesite=strict", "max-age=43200"):
            assert flag in cookie, cookie
        # The API over HTTPS; the sign-in lock from 127.0.0.2 does not stop 127.0.0.1.
        other = httpx.Client(
            base_url=base, transport=httpx.HTTPTransport(verify=trust, local_address="127.0.0.2")
        )
        with other, httpx.Client(base_url=base, verify=trust) as here:
            for _ in range(5):
                wrong = {"username": "chief", "password": "not it"}
                assert other.post("/api/auth/token", data=wrong).status_code == 401
            right = {"username": "chief", "password": PASSWORD}
            assert other.post("/api/auth/token", data=right).status_code == 429
            token = here.post("/api/auth/token", data=right)
            assert token.status_code == 200
            me = here.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
            )
            assert me.json()["username"] == "chief"
            assert me.headers["strict-transport-security"] == "max-age=31536000"
    started = next(
        json.loads(line)
        for line in served.output.splitlines()
        if line.startswith("{") and '"serving"' in line
    )
    assert started["url"].startswith("https://") and started["tls_fingerprint"] == (
        fingerprint.group(1)
    )
    # The shutdown wrote a signed checkpoint, and the untouched box verifies.
    checkpoints = (data_dir / "audit" / "checkpoints.jsonl").read_text().splitlines()
    assert json.loads(checkpoints[-1])["reason"] == "shutdown"
    assert "audit chain intact" in _radiant(data_dir, "audit", "verify")


def test_plain_http_beyond_loopback_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    refused = subprocess.run(
        [*RADIANT, "serve", "--host", "0.0.0.0", "--port", str(free_port()),
         "--data-dir", str(data_dir)],
        env=clean_env(RADIANT_DICOM_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()[-1]
    assert "RADIANT_HTTP_HOST: 0.0.0.0 is not a loopback address" in line
    assert "RADIANT_ALLOW_PLAINTEXT_HTTP=true" in line
