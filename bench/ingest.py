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
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest_peers import (  # noqa: E402
    Appliance,
    BenchError,
    Orthanc,
    Peer,
    ReceiverUnavailable,
    orthanc_binary,
    package_version,
    require_tool,
)
from bench.ingest_send import (  # noqa: E402
    PARALLEL,
    InputSet,
    count_files,
    prepare_input,
    send,
    storescu_command,
)

DEFAULT_SERIES: tuple[Path, ...] = (
    ROOT / "tests/data/mr_siemens_t1_sag_brain_35sl",
    ROOT / "tests/data/mr_ge_fmri_2series_4d",
    ROOT / "tests/data/ct_ge_head_tilt18_varspacing",
)
OPTIONAL_SERIES = ROOT.parent / "shared/data/dicom/ct_chest_lidc_0001"
ASSOCIATIONS = (1, *PARALLEL)
TARGET_RATIO = 1.8
NOT_AVAILABLE = "appliance receiver not available yet"


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
