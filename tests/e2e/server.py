"""The real appliance for browser tests: ``radiant serve`` (granian) as a subprocess on free
127.0.0.1 ports, with a fresh data dir, the recording OpenAI-protocol server as its AI engine and a
temp folder as its only media mount root. Its output goes to a log file (a pipe nobody reads would
fill up and stall the server during a long test), shown when a test fails."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.ai_server import AIServer
from tests.servers import RADIANT, clean_env, free_port

AE_TITLE = "RADIANT_E2E"
SITE_NAME = "RadiantAI E2E"
SETUP_ADMIN = "e2e-setup"
SETUP_PASSWORD = "e2e setup password 1"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


def radiant_command() -> list[str]:
    """``.venv/bin/radiant`` next to this interpreter (what ``./just run`` calls), else
    ``python -m radiant``."""
    script = Path(sys.executable).with_name("radiant")
    return [str(script)] if script.exists() else list(RADIANT)


@dataclass
class ApplianceServer:
    """A running appliance: where it answers and where its files are."""

    url: str
    data_dir: Path
    dicom_port: int
    ae_title: str
    ai: AIServer
    media_root: Path
    log_path: Path
    env: dict[str, str]
    #: The administrator ``radiant provision`` created (None on an unprovisioned box).
    setup_admin: tuple[str, str] | None = None
    #: The box certificate the server serves HTTPS with (None: plain HTTP on loopback).
    certificate: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def add_user(self, username: str, role: str, password: str) -> None:
        """Create a user with ``radiant user create`` against the live data dir."""
        self.radiant(
            "user",
            "create",
            "--username",
            username,
            "--role",
            role,
            "--password-stdin",
            stdin=password,
        )

    def radiant(self, *args: str, stdin: str | None = None) -> str:
        """Run ``radiant ARGS --data-dir DATA_DIR`` with the server's settings; its stdout."""
        result = subprocess.run(
            [*radiant_command(), *args, "--data-dir", str(self.data_dir)],
            input=None if stdin is None else stdin + "\n",
            env=self.env,
            cwd=self.data_dir.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"radiant {' '.join(args)} failed with {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def insert_media(self, source: Path, label: str = "USB_STICK") -> Path:
        """Make ``source`` appear as a USB stick named ``label``: copied beside the mount root,
        then renamed into it in one step, so the watcher never sees a half-copied stick."""
        target = self.media_root / label
        if target.exists():
            raise AssertionError(f"media {label!r} is already inserted")
        staging = self.media_root.parent / f".staging-{label}"
        shutil.copytree(source, staging)
        staging.rename(target)
        return target

    def eject_media(self, label: str = "USB_STICK") -> None:
        """Remove the stick named ``label`` (renamed out first, then deleted)."""
        gone = self.media_root.parent / f".ejected-{label}-{time.monotonic_ns()}"
        (self.media_root / label).rename(gone)
        shutil.rmtree(gone)

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client must trust to reach the server (the box certificate only)."""
        if self.certificate is None:
            return True
        return ssl.create_default_context(cafile=str(self.certificate))

    def spki_pin(self) -> str:
        """base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's pin form)."""
        assert self.certificate is not None
        cert = x509.load_pem_x509_certificate(self.certificate.read_bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 150) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def appliance_env(
    data_dir: Path, dicom_port: int, ai: AIServer, media_root: Path, extra: Mapping[str, str]
) -> dict[str, str]:
    """The server's environment: no RADIANT_* of the developer, the test's settings, ``extra``
    last (a test module may add RADIANT_DICOM_PEERS and the like)."""
    return clean_env(
        RADIANT_DATA_DIR=str(data_dir),
        RADIANT_HTTP_HOST="127.0.0.1",
        RADIANT_DICOM_HOST="127.0.0.1",
        RADIANT_DICOM_PORT=str(dicom_port),
        RADIANT_DICOM_AE_TITLE=AE_TITLE,
        RADIANT_MEDIA_ROOTS=str(media_root),
        RADIANT_MODE="offline",
        RADIANT_AI_ENGINE="openai",
        RADIANT_AI_ENDPOINT=ai.url,
        # The hospital's online endpoint stands in as the same test server, so that an
        # administrator has something to go online to (sync/golive.py checks it first).
        RADIANT_AI_ONLINE_ENDPOINT=ai.url,
        RADIANT_AI_TIMEOUT_S="60",
        RADIANT_AI_MAX_ATTEMPTS="2",
        RADIANT_AI_RETRY_BASE_S="0",
        # Series and studies count as stable one second after their last instance.
        RADIANT_STABLE_AGE_S="1",
        # The test machine's disk may be fuller than a box's; the watermark is not under test.
        RADIANT_MIN_FREE_GB="0",
        RADIANT_EVICT_FREE_GB="0",
        RADIANT_LOG_LEVEL="info",
        **dict(extra),
    )


def start_appliance(
    root: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    provisioned: bool = True,
    tls: bool = False,
) -> ApplianceServer:
    """Start ``radiant serve`` with everything under ``root``; returns once /healthz answers.

    ``provisioned``: first run ``radiant provision`` (site, language en, the fixture's DICOM
    port and AE title, offline, administrator SETUP_ADMIN) as a box leaves the factory set-up;
    False leaves the box on its first-boot screen. ``tls``: serve HTTPS with the box's own
    certificate (made by provisioning, or by ``radiant tls renew``), with ``RADIANT_HTTP_TLS=on``.

    The caller must call :func:`stop_appliance` (also when this raises, nothing is left
    running: a server that does not come up is stopped here)."""
    data_dir = root / "data"
    media_root = root / "media"
    media_root.mkdir(parents=True)
    log_path = root / "serve.log"
    port = free_port()
    dicom_port = free_port()
    ai = AIServer().start()
    tls_env = (
        {
            "RADIANT_HTTP_TLS": "on",  # also on 127.0.0.1 (auto serves loopback in plain HTTP)
        }
        if tls
        else {}
    )
    env = appliance_env(data_dir, dicom_port, ai, media_root, {**tls_env, **(extra_env or {})})
    server = ApplianceServer(
        url=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
        data_dir=data_dir,
        dicom_port=dicom_port,
        ae_title=env["RADIANT_DICOM_AE_TITLE"],
        ai=ai,
        media_root=media_root,
        log_path=log_path,
        env=env,
    )
    if provisioned:
        try:
            server.radiant(
                "provision",
                "--no-remote-check",
                "--site-name",
                SITE_NAME,
                "--timezone",
                "UTC",
                "--language",
                "en",
                "--admin-username",
                SETUP_ADMIN,
                "--ae-title",
                AE_TITLE,
                "--dicom-port",
                str(dicom_port),
                "--mode",
                "offline",
                "--admin-password-stdin",
                stdin=SETUP_PASSWORD,
            )
        except BaseException:
            ai.stop()
            raise
        server.setup_admin = (SETUP_ADMIN, SETUP_PASSWORD)
    if tls:
        if not provisioned:
            server.radiant("tls", "renew")
        server.certificate = data_dir / "tls" / "box.crt"
    with log_path.open("wb") as log:
        # cwd=root: no .env of the developer's checkout is read.
        server.process = subprocess.Popen(
            [*radiant_command(), "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(server)
    except BaseException:
        stop_appliance(server)
        raise
    return server


def _wait_ready(server: ApplianceServer) -> None:
    assert server.process is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"radiant serve exited with {server.process.returncode} before answering; "
                f"its log ({server.log_path}):\n{server.log_tail()}"
            )
        try:
            answer = httpx.get(f"{server.url}/healthz", timeout=2.0, verify=server.verify)
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"radiant serve did not answer /healthz within {START_TIMEOUT_S:.0f} s; "
        f"its log ({server.log_path}):\n{server.log_tail()}"
    )


def stop_appliance(server: ApplianceServer) -> None:
    """SIGTERM to the server's process group, SIGKILL if it is still there after
    STOP_TIMEOUT_S; then the AI server."""
    process = server.process
    try:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    finally:
        server.ai.stop()
