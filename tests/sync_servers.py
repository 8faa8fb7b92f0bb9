"""Real object-store servers for the sync tests, on free ports of 127.0.0.1: moto_server (S3,
in memory), ``rclone serve s3`` (S3 over a folder: survives a restart, for outages) and Azurite
(Azure Blob, installed by ``./just test`` into ``.cache/azurite``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appliance.config import Settings
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AZURITE = ROOT / ".cache" / "azurite" / "node_modules" / "azurite" / "dist" / "src" / "blob"
AZURITE_MAIN = AZURITE / "main.js"
# Azurite's well-known development account (public, documented by Microsoft).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
S3_KEY, S3_SECRET = "radiant-test", "radiant-test-secret"


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode} (see server.log)")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _start(args: list[str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RADIANT_", "RCLONE_"))}
    # Output goes to a file: a pipe nobody reads fills up and blocks a chatty server.
    with open(cwd / "server.log", "ab") as log_file:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port(port, process)
    except BaseException:
        stop_process(process)
        raise
    return process


@dataclass
class Remote:
    """One running server and the RADIANT_SYNC_* settings that reach it."""

    kind: str
    bucket: str
    endpoint: str
    port: int
    workdir: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """RADIANT_SYNC_* variables for a subprocess."""
        values = {
            "RADIANT_SYNC_REMOTE": self.kind,
            "RADIANT_SYNC_BUCKET": self.bucket,
            "RADIANT_SYNC_ENDPOINT": self.endpoint,
        }
        if self.kind == "s3":
            values |= {"RADIANT_SYNC_ACCESS_KEY": S3_KEY, "RADIANT_SYNC_SECRET_KEY": S3_SECRET}
        else:
            values |= {
                "RADIANT_SYNC_AZURE_ACCOUNT": AZURE_ACCOUNT,
                "RADIANT_SYNC_AZURE_KEY": AZURE_KEY,
            }
        return values | extra

    def settings(self, data_dir: Path, **extra: Any) -> Settings:
        values: dict[str, Any] = {
            k.removeprefix("RADIANT_").lower(): v for k, v in self.env().items()
        }
        values |= {"sync_interval_s": 0.5, "sync_stale_s": 3.0}
        return Settings(data_dir=data_dir, **(values | extra))

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def start(self) -> None:
        """(Re)start the server on the same port with the same storage."""
        assert self.process is None
        self.process = _start(self.args, self.port, self.workdir)

    def rclone_conf(self) -> Path:
        """An rclone config with a ``raw`` remote onto the server (test side only)."""
        path = self.workdir / "test-rclone.conf"
        if self.kind == "s3":
            body = (
                f"[raw]\ntype = s3\nprovider = Other\naccess_key_id = {S3_KEY}\n"
                f"secret_access_key = {S3_SECRET}\nendpoint = {self.endpoint}\n"
                "region = us-east-1\nforce_path_style = true\n"
            )
        else:
            body = (
                f"[raw]\ntype = azureblob\naccount = {AZURE_ACCOUNT}\nkey = {AZURE_KEY}\n"
                f"endpoint = {self.endpoint}\n"
            )
        path.write_text(body, encoding="utf-8")
        return path

    def rclone(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        return subprocess.run(
            [str(BIN / "rclone"), "--config", str(self.rclone_conf()), *args],
            capture_output=True,
            text=True,
            env=env,
            check=check,
            timeout=300,
        )

    def make_bucket(self, name: str | None = None) -> None:
        self.rclone("mkdir", f"raw:{name or self.bucket}")

    def download(self, remote_path: str, dest: Path) -> dict[str, bytes]:
        """Every object under ``bucket/remote_path``, raw, as {relative path: bytes}."""
        self.rclone("copy", f"raw:{self.bucket}/{remote_path}", str(dest))
        return {
            p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()
        }


@contextmanager
def moto_s3(workdir: Path, bucket: str = "radiant-bucket") -> Iterator[Remote]:
    """moto_server (in memory) with ``bucket`` created."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    args = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    remote = Remote("s3", bucket, f"http://127.0.0.1:{port}", port, workdir, args)
    remote.start()
    try:
        remote.make_bucket()
        yield remote
    finally:
        remote.stop()


@contextmanager
def rclone_s3(workdir: Path, bucket: str = "radiant-bucket") -> Iterator[Remote]:
    """``rclone serve s3`` over a folder (persistent across stop/start) with ``bucket``."""
    port = free_port()
    root = workdir / "s3root"
    (root / bucket).mkdir(parents=True, exist_ok=True)
    args = [
        str(BIN / "rclone"),
        "serve",
        "s3",
        "--config",
        "/dev/null",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{S3_KEY},{S3_SECRET}",
        str(root),
    ]
    remote = Remote("s3", bucket, f"http://127.0.0.1:{port}", port, workdir, args)
    remote.start()
    try:
        yield remote
    finally:
        remote.stop()


@contextmanager
def azurite(workdir: Path, container: str = "radiant-container") -> Iterator[Remote]:
    """Azurite's blob service with ``container`` created."""
    if not AZURITE_MAIN.exists():
        pytest.fail("Azurite is not installed: run ./just test (it installs it with npm)")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Azurite needs Node.js)")
    port = free_port()
    location = workdir / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    args = [
        node,
        str(AZURITE_MAIN),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(location),
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
    ]
    endpoint = f"http://127.0.0.1:{port}/{AZURE_ACCOUNT}"
    remote = Remote("azure", container, endpoint, port, workdir, args)
    remote.start()
    try:
        remote.make_bucket()
        yield remote
    finally:
        remote.stop()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def poll(what: str, check: Any, timeout: float = 90.0, interval: float = 0.25) -> Any:
    """Call ``check()`` until it returns something truthy; fail naming ``what`` after
    ``timeout`` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached within {timeout} s (last: {last!r})")
