"""The two receivers of the ingest benchmark, Orthanc and the appliance, and the process helpers.

Each peer starts fresh (empty storage) for every run, answers C-ECHO before it is timed, says how
many instances it holds afterwards, and is stopped with its whole process group.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CALLING_AE = "BENCH"
ORTHANC_AE = "ORTHANC"
APPLIANCE_AE = "RADIANT"
ORTHANC_START_TIMEOUT = 30.0
APPLIANCE_START_TIMEOUT = 60.0
STORESCU_TIMEOUT = 900.0

# storescu -v prints one of these per C-STORE response, e.g.
# "I: Received Store Response (Success)" or "... (Warning: ...)" / "... (Failed: ...)".
STORE_RESPONSE = re.compile(r"Received Store Response \(([^):]+)")


class BenchError(Exception):
    """A setup problem that stops the benchmark (missing tool, peer that never starts)."""


class ReceiverUnavailable(BenchError):
    """The appliance runs no DICOM receiver (yet)."""


# --------------------------------------------------------------------------------------------
# process and protocol helpers


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (bound to port 0, then released)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def bench_env() -> dict[str, str]:
    """The environment for storescu and the peers: ours plus ``TCP_NODELAY=1``."""
    return {**os.environ, "TCP_NODELAY": "1"}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} not found: install dcmtk (just apt bench)")
    return path


def orthanc_binary() -> str:
    """The Orthanc server binary that the Debian package ``orthanc`` installed."""
    try:
        listing = subprocess.run(
            ["dpkg-query", "-L", "orthanc"], capture_output=True, text=True, check=False
        ).stdout
    except FileNotFoundError:
        listing = ""
    for line in listing.splitlines():
        path = Path(line.strip())
        if path.name == "Orthanc" and path.parent.name in {"sbin", "bin"} and path.is_file():
            return str(path)
    found = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise BenchError("Orthanc not found: install the Debian package orthanc (just apt bench)")
    return found


def package_version(name: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "not installed"


def http_get_json(port: int, path: str, timeout: float = 5.0) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise BenchError(f"GET {path} answered {response.status}")
        return json.loads(body)
    finally:
        conn.close()


def echo(port: int, called_ae: str) -> bool:
    """True when a C-ECHO from ``BENCH`` to ``called_ae`` at 127.0.0.1:``port`` succeeds."""
    try:
        result = subprocess.run(
            [
                "echoscu",
                "-aet",
                CALLING_AE,
                "-aec",
                called_ae,
                "-to",
                "2",
                "-ta",
                "2",
                "-td",
                "2",
                HOST,
                str(port),
            ],
            capture_output=True,
            env=bench_env(),
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Terminate the process group we started (``start_new_session``), wait, then kill it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Children (granian's worker) may outlive the leader: the group goes down either way.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# peers


class Peer:
    """A DICOM receiver started fresh (empty storage) for every run."""

    name = "peer"
    ae = ""

    def start(self, rundir: Path) -> int:
        """Start on a fresh storage dir; return the DICOM port once a C-ECHO succeeds."""
        raise NotImplementedError

    def stored(self) -> int:
        """How many instances the peer says it holds."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def command(self) -> str:
        """The command line, for the report."""
        raise NotImplementedError


class Orthanc(Peer):
    name = "orthanc"
    ae = ORTHANC_AE

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.http_port = 0
        self.config_path: Path | None = None

    def config(self, rundir: Path, dicom_port: int, http_port: int) -> dict[str, Any]:
        return {
            "Name": "bench-orthanc",
            "StorageDirectory": str(rundir / "storage"),
            "IndexDirectory": str(rundir / "index"),
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": ORTHANC_AE,
            "DicomPort": dicom_port,
            # No bind-address option exists: accept C-STORE only from BENCH at 127.0.0.1.
            "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {"bench": [CALLING_AE, HOST, 104]},
        }

    def start(self, rundir: Path) -> int:
        dicom_port, self.http_port = free_ports(2)
        rundir.mkdir(parents=True)
        self.config_path = rundir / "orthanc.json"
        self.config_path.write_text(
            json.dumps(self.config(rundir, dicom_port, self.http_port), indent=2),
            encoding="utf-8",
        )
        log = rundir / "orthanc.log"
        with log.open("wb") as handle:
            self.proc = subprocess.Popen(
                [self.binary, str(self.config_path)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=bench_env(),
                cwd=rundir,
                start_new_session=True,
            )
        deadline = time.monotonic() + ORTHANC_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"Orthanc exited {self.proc.returncode} at start:\n{tail(log)}")
            if echo(dicom_port, ORTHANC_AE) and self._http_up():
                return dicom_port
            time.sleep(0.2)
        raise BenchError(f"Orthanc did not answer C-ECHO within {ORTHANC_START_TIMEOUT:.0f} s")

    def _http_up(self) -> bool:
        try:
            http_get_json(self.http_port, "/system", timeout=2)
        except (OSError, BenchError, ValueError):
            return False
        return True

    def stored(self) -> int:
        return int(http_get_json(self.http_port, "/statistics")["CountInstances"])

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def command(self) -> str:
        return f"TCP_NODELAY=1 {self.binary} <rundir>/orthanc.json"


class Appliance(Peer):
    name = "appliance"
    ae = APPLIANCE_AE

    def __init__(self, frontend: str = "native") -> None:
        self.frontend = frontend
        if frontend != "native":
            self.name = "appl-pynet"
        self.radiant = str(ROOT / ".venv" / "bin" / "radiant")
        self.proc: subprocess.Popen[bytes] | None = None
        self.http_port = 0
        self.data_dir: Path | None = None

    def start(self, rundir: Path) -> int:
        if not Path(self.radiant).is_file():
            raise BenchError(f"{self.radiant} not found: run ./just first")
        dicom_port, self.http_port = free_ports(2)
        rundir.mkdir(parents=True)
        self.data_dir = rundir / "data"
        env = {
            **bench_env(),
            "RADIANT_DICOM_PORT": str(dicom_port),
            "RADIANT_DICOM_AE_TITLE": APPLIANCE_AE,
            "RADIANT_HTTP_HOST": HOST,
            "RADIANT_DICOM_FRONTEND": self.frontend,
        }
        log = rundir / "radiant.log"
        with log.open("wb") as handle:
            self.proc = subprocess.Popen(
                [self.radiant, "serve", "--port", str(self.http_port),
                 "--data-dir", str(self.data_dir)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=rundir,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + APPLIANCE_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ReceiverUnavailable(
                    f"radiant serve exited {self.proc.returncode} at start:\n{tail(log)}"
                )
            if echo(dicom_port, APPLIANCE_AE):
                return dicom_port
            time.sleep(0.5)
        raise ReceiverUnavailable(
            f"no C-ECHO answer on 127.0.0.1:{dicom_port} within {APPLIANCE_START_TIMEOUT:.0f} s"
        )

    def stored(self) -> int:
        try:
            health = http_get_json(self.http_port, "/healthz")
        except (OSError, BenchError, ValueError):
            health = None
        counted = instances_in_health(health)
        if counted is not None:
            return counted
        assert self.data_dir is not None
        db = self.data_dir / "radiant.db"
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def command(self) -> str:
        return (
            f"TCP_NODELAY=1 RADIANT_DICOM_FRONTEND={self.frontend} RADIANT_DICOM_PORT=<port> "
            f"RADIANT_DICOM_AE_TITLE={APPLIANCE_AE} "
            f"{self.radiant} serve --port <port> --data-dir <rundir>/data"
        )


def instances_in_health(health: Any) -> int | None:
    """An instance count from ``/healthz`` when it reports one (``instances`` or ``counts``)."""
    if not isinstance(health, dict):
        return None
    for holder in (health, health.get("counts"), health.get("database"), health.get("store")):
        if isinstance(holder, dict):
            value = holder.get("instances")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None
