"""DICOM ingest benchmark: the appliance's C-STORE receiver against Orthanc.

Sends one set of series with dcmtk's ``storescu`` to a fresh Orthanc and to a fresh appliance
(``radiant serve``), over one association and over four and eight parallel associations, and
prints instances per second for each and the ratio appliance / Orthanc. A benchmark, not a test: it
asserts nothing about time. A run is only reported as a rate when storescu exited 0, every
C-STORE was answered with Success and the peer's own count shows every instance stored.

Usage: ``.venv/bin/python bench/ingest.py [--series DIR ...] [--repeat N]`` (``just bench-ingest``).

The appliance runs twice per cell: with its native DICOM front end (``RADIANT_DICOM_FRONTEND=
native``, the default: ``appliance``) and with everything through pynetdicom
(``RADIANT_DICOM_FRONTEND=pynetdicom``: ``appl-pynet``); ``--frontends`` picks. The ratio is the
native appliance's over Orthanc's.

Both peers and storescu run with ``TCP_NODELAY=1`` in their environment: without it every DIMSE
message waits on the 40 ms Nagle / delayed-ACK stall and both figures measure that timer.
Orthanc keeps its durable defaults (``SyncStorageArea`` true, no compression) and loads no
plugins. Orthanc 1.10 has no option to bind its listeners to one address: its HTTP server refuses
non-loopback clients (``RemoteAccessAllowed`` false) and its DICOM server accepts C-STORE only
from the modality ``BENCH`` at 127.0.0.1 (``DicomAlwaysAllowStore`` false, host checked).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERIES: tuple[Path, ...] = (
    ROOT / "tests/data/mr_siemens_t1_sag_brain_35sl",
    ROOT / "tests/data/mr_ge_fmri_2series_4d",
    ROOT / "tests/data/ct_ge_head_tilt18_varspacing",
)
OPTIONAL_SERIES = ROOT.parent / "shared/data/dicom/ct_chest_lidc_0001"

HOST = "127.0.0.1"
CALLING_AE = "BENCH"
ORTHANC_AE = "ORTHANC"
APPLIANCE_AE = "RADIANT"
PARALLEL = (4, 8)  # parallel association counts measured besides one
ASSOCIATIONS = (1, *PARALLEL)
ORTHANC_START_TIMEOUT = 30.0
APPLIANCE_START_TIMEOUT = 60.0
STORESCU_TIMEOUT = 900.0
TARGET_RATIO = 1.8
NOT_AVAILABLE = "appliance receiver not available yet"

# storescu -v prints one of these per C-STORE response, e.g.
# "I: Received Store Response (Success)" or "... (Warning: ...)" / "... (Failed: ...)".
STORE_RESPONSE = re.compile(r"Received Store Response \(([^):]+)")


class BenchError(Exception):
    """A setup problem that stops the benchmark (missing tool, peer that never starts)."""


class ReceiverUnavailable(BenchError):
    """The appliance runs no DICOM receiver (yet)."""


@dataclass
class RunResult:
    """One timed send of the whole set to one peer."""

    peer: str
    associations: int
    instances: int
    seconds: float
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class Measurement:
    """All repeats of one (peer, associations) cell of the table."""

    peer: str
    associations: int
    runs: list[RunResult] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [r.failure for r in self.runs if r.failure is not None]

    @property
    def median_seconds(self) -> float | None:
        if not self.runs or self.failures:
            return None
        return statistics.median(r.seconds for r in self.runs)

    def rate(self, instances: int) -> float | None:
        seconds = self.median_seconds
        return None if seconds is None or seconds <= 0 else instances / seconds


# --------------------------------------------------------------------------------------------
# small helpers


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


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file: 128-byte preamble then ``DICM``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


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
# input set


@dataclass
class InputSet:
    """The files to send, copied once into ``whole`` and split round-robin into ``parts``."""

    whole: Path
    parts: dict[int, list[Path]]  # association count -> its folders
    count: int
    size: int
    notes: list[str]


def collect(series: Sequence[Path]) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Every DICOM file under ``series`` as (source, relative destination); the skipped files.

    Only Part 10 files are sent: storescu 3.6.7 aborts the whole association on the first file
    it cannot parse (a README in the folder is enough), so other files are left out and listed.
    """
    pairs: list[tuple[Path, Path]] = []
    skipped: list[Path] = []
    for index, folder in enumerate(series):
        if not folder.is_dir():
            raise BenchError(f"series folder not found: {folder}")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if is_dicom_file(path):
                rel = Path(f"{index:02d}_{folder.name}") / path.relative_to(folder)
                pairs.append((path, rel))
            else:
                skipped.append(path)
    return pairs, skipped


def prepare_input(series: Sequence[Path], workdir: Path, notes: list[str]) -> InputSet:
    pairs, skipped = collect(series)
    if not pairs:
        raise BenchError("no DICOM files in the chosen series")
    if skipped:
        names = ", ".join(sorted({p.name for p in skipped})[:6])
        notes.append(f"{len(skipped)} files without a DICOM Part 10 header not sent ({names})")
    whole = workdir / "input" / "all"
    parts = {
        n: [workdir / "input" / f"split{n}" / f"part{i}" for i in range(n)] for n in PARALLEL
    }
    size = 0
    for i, (src, rel) in enumerate(pairs):
        dest = whole / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        size += dest.stat().st_size
        # The parts are hard links to the same copies: same bytes, same page cache.
        for n, folders in parts.items():
            linked = folders[i % n] / rel
            linked.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(dest, linked)
            except OSError:
                shutil.copyfile(dest, linked)
    # Read everything once so that neither peer pays for the first cold read.
    for src_path in whole.rglob("*"):
        if src_path.is_file():
            src_path.read_bytes()
    return InputSet(whole=whole, parts=parts, count=len(pairs), size=size, notes=notes)


# --------------------------------------------------------------------------------------------
# storescu


def storescu_command(port: int, called_ae: str, folder: Path) -> list[str]:
    return [
        "storescu", "-v", "-aet", CALLING_AE, "-aec", called_ae, HOST, str(port),
        "--scan-directories", "--recurse", str(folder),
    ]  # fmt: skip


def check_storescu(returncode: int, output: str, expected: int) -> str | None:
    """None when storescu exited 0 and reported ``expected`` successful C-STOREs, else why not."""
    responses = STORE_RESPONSE.findall(output)
    successes = sum(1 for r in responses if r.strip() == "Success")
    problems = [r for r in responses if r.strip() != "Success"]
    errors = [line for line in output.splitlines() if line.startswith(("E:", "F:"))]
    if returncode != 0:
        return f"storescu exited {returncode}: " + ("; ".join(errors[:3]) or output[-300:])
    if problems:
        return f"{len(problems)} non-success C-STORE responses (first: {problems[0]})"
    if errors:
        return "storescu reported errors: " + "; ".join(errors[:3])
    if successes != expected:
        return f"storescu got {successes} successful C-STORE responses, expected {expected}"
    return None


def send(
    port: int,
    called_ae: str,
    folders: Sequence[Path],
    counts: Sequence[int],
    logdir: Path,
    label: str,
) -> tuple[float, str | None]:
    """Run one storescu per folder in parallel; wall-clock seconds and the first failure."""
    logs = [logdir / f"storescu-{label}-{i}.log" for i in range(len(folders))]
    handles = [log.open("wb") for log in logs]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        start = time.perf_counter()
        for folder, handle in zip(folders, handles, strict=True):
            procs.append(
                subprocess.Popen(
                    storescu_command(port, called_ae, folder),
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=bench_env(),
                    start_new_session=True,
                )
            )
        codes: list[int] = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=STORESCU_TIMEOUT))
            except subprocess.TimeoutExpired:
                stop_process(proc, grace=2)
                codes.append(-1)
        seconds = time.perf_counter() - start
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop_process(proc, grace=2)
        for handle in handles:
            handle.close()
    for code, log, expected in zip(codes, logs, counts, strict=True):
        output = log.read_text(encoding="utf-8", errors="replace")
        failure = check_storescu(code, output, expected)
        if failure is not None:
            return seconds, f"{failure} (log {log.name})"
    return seconds, None


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


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


def measure(peer: Peer, data: InputSet, associations: int, workdir: Path, label: str) -> RunResult:
    """One run: fresh peer, timed storescu, count check, peer stopped whatever happens."""
    rundir = workdir / "runs" / label
    folders = [data.whole] if associations == 1 else data.parts[associations]
    counts = [data.count] if associations == 1 else [count_files(f) for f in folders]
    try:
        port = peer.start(rundir)
        seconds, failure = send(port, peer.ae, folders, counts, rundir, label)
        if failure is None:
            stored = peer.stored()
            if stored != data.count:
                failure = f"{peer.name} holds {stored} instances, {data.count} were sent"
        return RunResult(peer.name, associations, data.count, seconds, failure)
    finally:
        peer.stop()


# --------------------------------------------------------------------------------------------
# report


def machine_facts(workdir: Path) -> list[tuple[str, str]]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("nproc", str(nproc)),
        ("cpu", model),
        ("kernel", platform.release()),
        ("temp dir", str(workdir)),
        ("temp dir file system", filesystem_of(workdir)),
        ("dcmtk", package_version("dcmtk")),
        ("orthanc", package_version("orthanc")),
    ]


def filesystem_of(path: Path) -> str:
    """Type and device of the mount that holds ``path`` (from /proc/self/mounts)."""
    best: tuple[int, str] = (-1, "unknown")
    resolved = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            device, mount, fstype = fields[0], fields[1].replace("\\040", " "), fields[2]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > best[0]:
                best = (len(mount), f"{fstype} ({device} on {mount})")
    return best[1]


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(cells: Sequence[Measurement], count: int) -> None:
    header = f"{'peer':<10} {'assoc':>5} {'instances':>9} {'seconds':>8} {'inst/s':>8}  runs (s)"
    print(header)
    print("-" * len(header))
    for cell in cells:
        start = f"{cell.peer:<10} {cell.associations:>5} {count:>9}"
        seconds = cell.median_seconds
        if cell.failures:
            print(f"{start} {'FAILED':>8} {'-':>8}  {cell.failures[0]}")
        elif seconds is None:
            print(f"{start} {'-':>8} {'-':>8}  not run")
        else:
            runs = " ".join(f"{r.seconds:.2f}" for r in cell.runs)
            print(f"{start} {seconds:>8.2f} {fmt_rate(cell.rate(count)):>8}  {runs}")


def ratio(appliance: Measurement, orthanc: Measurement, count: int) -> str:
    a, o = appliance.rate(count), orthanc.rate(count)
    if a is None or o is None or o == 0:
        return "n/a"
    return f"{a / o:.2f}x"


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--series",
        type=Path,
        action="append",
        metavar="DIR",
        help="a folder of DICOM files to send (repeatable; default: the three test series "
        "plus ../shared/data/dicom/ct_chest_lidc_0001 when present)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="runs per cell; the median is shown"
    )
    parser.add_argument(
        "--frontends",
        default="native,pynetdicom",
        metavar="LIST",
        help="appliance DICOM front ends to run, comma-separated (default: native,pynetdicom)",
    )
    parser.add_argument(
        "--associations",
        default=",".join(map(str, ASSOCIATIONS)),
        metavar="LIST",
        help=f"association counts to measure, comma-separated, from {ASSOCIATIONS}",
    )
    args = parser.parse_args(argv)
    try:
        args.associations = [int(n) for n in args.associations.split(",") if n.strip()]
    except ValueError:
        parser.error("--associations takes numbers")
    if not args.associations or set(args.associations) - set(ASSOCIATIONS):
        parser.error(f"--associations takes numbers from {ASSOCIATIONS}")
    args.frontends = [f.strip() for f in args.frontends.split(",") if f.strip()]
    if not args.frontends or set(args.frontends) - {"native", "pynetdicom"}:
        parser.error("--frontends takes native and/or pynetdicom")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def choose_series(given: Sequence[Path] | None) -> tuple[list[Path], list[str]]:
    if given:
        return [p.resolve() for p in given], [f"series given on the command line: {len(given)}"]
    series = list(DEFAULT_SERIES)
    if OPTIONAL_SERIES.is_dir():
        series.append(OPTIONAL_SERIES)
        note = f"chest CT present and included: {OPTIONAL_SERIES}"
    else:
        note = f"chest CT ABSENT, not included: {OPTIONAL_SERIES} does not exist"
    return series, [note]


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="radiant-bench-ingest-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    for tool in ("storescu", "echoscu"):
        require_tool(tool)
    orthanc = Orthanc(orthanc_binary())
    appliances = [Appliance(frontend) for frontend in args.frontends]
    series, notes = choose_series(args.series)
    with workspace() as workdir:
        print("== machine")
        for key, value in machine_facts(workdir):
            print(f"{key:<22} {value}")
        data = prepare_input(series, workdir, notes)
        print("\n== input")
        for folder in series:
            print(f"series                 {folder}")
        for note in notes:
            print(f"note                   {note}")
        print(f"instances              {data.count} ({data.size / 1e6:.1f} MB)")
        for n, folders in data.parts.items():
            split = [count_files(p) for p in folders]
            print(f"parallel split ({n})    {split} (round robin)")
        print("\n== commands")
        print(f"orthanc                {orthanc.command()}")
        for appliance in appliances:
            print(f"{appliance.name:<22} {appliance.command()}")
        print(
            "storescu               TCP_NODELAY=1 "
            + " ".join(storescu_command(0, "<AE>", Path("<dir>"))).replace(" 0 ", " <port> ")
        )
        print(f"parallel               N storescu processes at once, N in {PARALLEL}, one per part")

        cells = {
            (peer, n): Measurement(peer, n)
            for peer in ("orthanc", *(a.name for a in appliances))
            for n in args.associations
        }
        appliance_missing: str | None = None
        print("\n== runs")
        for rep in range(args.repeat):
            for n in args.associations:
                for peer in (orthanc, *appliances):
                    if peer is not orthanc and appliance_missing is not None:
                        continue
                    label = f"{peer.name}-{n}-{rep}"
                    try:
                        result = measure(peer, data, n, workdir, label)
                    except ReceiverUnavailable as exc:
                        appliance_missing = str(exc)
                        print(f"{label}: {NOT_AVAILABLE} ({exc.args[0].splitlines()[0]})")
                        continue
                    cells[(peer.name, n)].runs.append(result)
                    status = "ok" if result.ok else f"FAILED: {result.failure}"
                    print(f"{label}: {result.seconds:.2f} s, {status}")

        print(f"\n== results ({args.repeat} run(s) per cell, median)")
        print_table(list(cells.values()), data.count)
        print()
        if appliance_missing is not None:
            print(NOT_AVAILABLE)
        for n in args.associations:
            for appliance in appliances:
                value = ratio(cells[(appliance.name, n)], cells[("orthanc", n)], data.count)
                print(f"ratio {appliance.name}/orthanc, {n} association(s): {value}")
        print(f"target: appliance >= {TARGET_RATIO}x Orthanc (one and four associations)")
    failed = any(c.failures for c in cells.values())
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench-ingest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
