"""Volume benchmark: our reconstruction against dcm2niix and SimpleITK, DICOM series to NIfTI.

For the largest series of tests/data (by pixels) and the 133-slice LIDC chest CT from
``../shared/data/dicom/ct_chest_lidc_0001`` when present, each tool turns a private copy of the
series' files into NIfTI in a FRESH subprocess, ``--repeat`` times (median shown):

* ours: ``appliance.volumes.reconstruct.build_volumes`` then ``appliance.volumes.nifti.write_nifti``
  (``.nii``: the bytes nibabel would write, uncompressed; ``.nii.gz``: exactly what the
  appliance stores: ISA-L deflate level 2, about zlib level 1's size, in 4 MiB pieces on every
  core, streamed);
* dcm2niix ``-z n`` (``.nii``) and ``-z y`` (``.nii.gz``: it writes the ``.nii`` then runs
  pigz on it, on every core, at its default level 6), and ``-z y -1`` (pigz at level 1, the
  same output size as ours within 1 %), all with ``-b n`` (no JSON sidecar) so they write
  NIfTI only. On a tilted series dcm2niix writes two files (as acquired, and
  tilt-corrected/equidistant);
* ours warm: the same build and write in a fresh process that has done every import first,
  timed inside the process around the build and write only: what the appliance's background
  job pays (its server has long finished importing). Its wall time is that inner time; its
  peak memory is the whole child's, like the others;
* SimpleITK ``ImageSeriesReader`` (GDCM series file names, sorted by position) and
  ``WriteImage`` to ``.nii`` / ``.nii.gz`` (ITK's zlib, one thread).

Both formats are measured: ``.nii`` compares reconstruction and writing alone (fair: nobody
compresses), ``.nii.gz`` is the end-to-end cost of what each tool would store. Every run
includes the interpreter or program start-up (except ours warm). Wall time is measured around
the child.

Memory, the same method for every tool: the child's own peak RSS (``ru_maxrss`` from
``wait4``; the launcher is a bare interpreter, so no inherited high-water mark), and its
working memory = peak RSS minus the start-up footprint of the same program doing no work
(Python children: the interpreter with the tool's imports, ``--child baseline-*``; dcm2niix:
``dcm2niix`` with no input). The start-up footprint of our Python child (about 60 MB, most of
it pydicom's data dictionary) is a fixed cost, not one that grows with the volume.

Targets (printed as met / NOT met): ours no slower than dcm2niix end to end (``.nii.gz``,
dcm2niix at its default level; the ratio at the same level is printed too), and our working
memory at most 2.5x the size of the reconstructed volume(s) (absolute peak / volume printed
beside it).

A benchmark, not a test: it asserts nothing. Usage: ``.venv/bin/python bench/volumes.py
[--series DIR ...] [--repeat N]`` (``just bench-volumes``, which installs SimpleITK from the
``bench`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
OPTIONAL_SERIES = ROOT.parent / "shared" / "data" / "dicom" / "ct_chest_lidc_0001"
sys.path.insert(0, str(ROOT))

from bench.volumes_report import (  # noqa: E402
    BASELINE,
    FORMATS,
    Cell,
    Run,
    print_baselines,
    print_cells,
    print_machine,
    print_ratios,
    print_targets,
    tool_version,
    working_mb,
)


class BenchError(Exception):
    """A setup problem that stops the benchmark."""


# ---- children ---------------------------------------------------------------------------------


def child(tool: str, source: Path, out: Path, fmt: str) -> int:
    """Run one tool in this (fresh) process; prints the volume shapes written."""
    if tool == "baseline-ours":
        import nibabel
        import numpy  # noqa: F401
        import pydicom

        import appliance.volumes.nifti
        import appliance.volumes.reconstruct

        return 0
    if tool == "baseline-sitk":
        import SimpleITK  # noqa: F401

        return 0
    files = sorted(p for p in source.iterdir() if p.is_file())
    if tool in ("ours", "ours-warm"):
        if tool == "ours-warm":  # every import first, as in the appliance's server
            import nibabel  # noqa: F401
            import pydicom.pixels  # noqa: F401

            import appliance.volumes.nifti
            import appliance.volumes.reconstruct  # noqa: F401
        start = time.perf_counter()
        shapes = ours(files, out, fmt)
        seconds = time.perf_counter() - start
        print(*shapes, sep="\n")
        if tool == "ours-warm":
            print(f"{WARM_PREFIX}{seconds!r}")
        return 0
    if tool == "sitk":
        import SimpleITK as sitk

        reader = sitk.ImageSeriesReader()  # type: ignore[no-untyped-call]
        names = reader.GetGDCMSeriesFileNames(str(source))  # type: ignore[no-untyped-call]
        reader.SetFileNames(names)  # type: ignore[no-untyped-call]
        image = reader.Execute()  # type: ignore[no-untyped-call]
        sitk.WriteImage(image, str(out / f"vol{fmt}"), useCompression=fmt == ".nii.gz")
        print("x".join(str(s) for s in image.GetSize()), image.GetPixelIDTypeAsString())
        return 0
    raise BenchError(f"unknown child tool {tool}")


def ours(files: list[Path], out: Path, fmt: str) -> list[str]:
    """Build the series' volumes and write each to ``out``: what ``radiant volume build`` does."""
    from appliance.volumes.nifti import write_nifti
    from appliance.volumes.reconstruct import build_volumes

    shapes = []
    for n, volume in enumerate(v for v in build_volumes(files) if v.is_volume):
        write_nifti(volume, out / f"vol_{n}{fmt}")
        shapes.append(
            f"{'x'.join(str(s) for s in volume.voxels.shape[::-1])} {volume.voxels.dtype}"
        )
    return shapes


#: The line by which the warm child reports its inner build-and-write time.
WARM_PREFIX = "warm build+write seconds: "


# ---- measuring --------------------------------------------------------------------------------


# A small launcher process starts each tool and reports its rusage. ru_maxrss survives fork and
# exec on Linux (the child starts with its parent's high-water mark), so the tools must not be
# forked from this process, which holds pydicom and a reconstructed volume: the launcher is a
# bare interpreter (python -S, a few MB), below any tool's own peak.
LAUNCHER = """
import os, subprocess, sys, time
with open(sys.argv[1], "wb") as log:
    start = time.perf_counter()
    proc = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
print(os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss)
"""


def measure(command: list[str], out: Path, log: Path, *, expect_output: bool = True) -> Run:
    """Run ``command`` once in a fresh process: wall time, its own peak RSS (wait4) and the
    size of the NIfTI files it wrote."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launched = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, str(log), *command],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    try:
        code_text, seconds_text, maxrss_text = launched.stdout.split()
        code, seconds, peak_mb = int(code_text), float(seconds_text), int(maxrss_text) / 1024
    except ValueError:
        return Run(0.0, 0.0, f"launcher failed: {launched.stderr.strip()[-300:]}")
    if code == 0:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(WARM_PREFIX):
                seconds = float(line[len(WARM_PREFIX) :])
    written = [p for p in out.rglob("*") if p.is_file() and p.name.endswith((".nii", ".nii.gz"))]
    failure = None
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        failure = f"exit {code}: {' / '.join(tail)}"
    elif not written and expect_output:
        failure = "wrote no NIfTI file"
    return Run(seconds, peak_mb, failure, sum(p.stat().st_size for p in written) / 2**20)


def commands(tool: str, source: Path, out: Path, fmt: str) -> list[str]:
    if tool == "baseline-dcm2niix":
        return ["dcm2niix"]  # prints its usage: the program loaded, no work
    if tool.startswith("dcm2niix"):
        compress = "n" if fmt == ".nii" else "y"
        level = ["-1"] if tool == "dcm2niix-1" else []
        return [
            "dcm2niix",
            "-z",
            compress,
            *level,
            "-b",
            "n",
            "-f",
            "vol_%s",
            "-o",
            str(out),
            str(source),
        ]
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        tool,
        str(source),
        str(out),
        fmt,
    ]


# ---- input ------------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    files: list[Path]
    size: int
    pixels: int


def is_dicom(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def scan(folder: Path) -> list[Series]:
    """The series under ``folder`` (by Series Instance UID) with their pixel counts."""
    import pydicom

    groups: dict[str, Series] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and is_dicom(p)):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "Rows" not in ds:
            continue
        uid = str(ds.SeriesInstanceUID)
        entry = groups.setdefault(uid, Series(f"{folder.name}/{uid[-12:]}", [], 0, 0))
        entry.files.append(path)
        entry.size += path.stat().st_size
        entry.pixels += int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)
    return list(groups.values())


def choose(given: Sequence[Path] | None) -> tuple[list[Series], list[str]]:
    if given:
        return [s for folder in given for s in scan(folder)], ["series given on the command line"]
    candidates = [
        s
        for folder in sorted(DATA.iterdir())
        if folder.is_dir() and folder.name != "malformed"
        for s in scan(folder)
    ]
    chosen = [max(candidates, key=lambda s: s.pixels)]
    notes = [f"largest series of tests/data by pixels: {chosen[0].name}"]
    if OPTIONAL_SERIES.is_dir():
        chosen.extend(scan(OPTIONAL_SERIES))
        notes.append(f"chest CT present and included: {OPTIONAL_SERIES}")
    else:
        notes.append(f"chest CT ABSENT, not included: {OPTIONAL_SERIES} does not exist")
    return chosen, notes


def volume_mb(series: Series, workdir: Path) -> tuple[float, str]:
    """Size of our reconstructed volume(s) in MB (voxels x itemsize), and the shapes."""
    from appliance.volumes.reconstruct import build_volumes

    volumes = [v for v in build_volumes(series.files) if v.is_volume]
    size = sum(v.voxels.nbytes for v in volumes) / 2**20
    shapes = ", ".join(
        f"{'x'.join(str(n) for n in v.voxels.shape[::-1])} {v.voxels.dtype}" for v in volumes
    )
    return size, shapes


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="radiant-bench-volumes-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    if shutil.which("dcm2niix") is None:
        raise BenchError("dcm2niix not found: install it (just apt test)")
    tools = ["ours", "ours-warm", "dcm2niix", "dcm2niix-1"]
    if tool_version("sitk") != "not installed":
        tools.append("sitk")
    series_list, notes = choose(args.series)
    print_machine(notes)
    failed = False
    with workspace() as workdir:
        for series in series_list:
            failed = bench_series(series, workdir, tools, args.repeat) or failed
    return 1 if failed else 0


def bench_series(series: Series, workdir: Path, tools: list[str], repeat: int) -> bool:
    """Measure every tool and format on one series and print its report; True if one failed."""
    source = workdir / "in" / series.name.replace("/", "_")
    source.mkdir(parents=True)
    for path in series.files:
        shutil.copyfile(path, source / path.name)
        (source / path.name).read_bytes()  # warm the page cache for every tool alike
    size_mb, shapes = volume_mb(series, workdir)
    print(f"\n== {series.name}")
    print(f"{'files':<22} {len(series.files)} ({series.size / 2**20:.1f} MB)")
    print(f"{'our volume(s)':<22} {shapes} = {size_mb:.1f} MB")
    baselines = {name: Cell(name, "") for name in dict.fromkeys(BASELINE[t] for t in tools)}
    for _ in range(repeat):
        for name, cell in baselines.items():
            out = workdir / "out"
            command = commands(name, source, out, "")
            log = workdir / f"{name}.log"
            cell.runs.append(measure(command, out, log, expect_output=False))
    cells = {(t, f): Cell(t, f) for f in FORMATS for t in tools}
    for tool, fmt in [key for key in cells if key[0] == "dcm2niix-1" and key[1] == ".nii"]:
        del cells[(tool, fmt)]  # a compression level means nothing without compression
    for _ in range(repeat):
        for (tool, fmt), cell in cells.items():
            out = workdir / "out"
            cell.runs.append(
                measure(commands(tool, source, out, fmt), out, workdir / f"{tool}.log")
            )
    work = {key: working_mb(cell, baselines[BASELINE[key[0]]]) for key, cell in cells.items()}
    failed = print_cells(cells, work, size_mb)
    print_baselines(baselines)
    print_ratios(cells, work, tools)
    print_targets(cells, work, size_mb)
    if "sitk" not in tools:
        print("SimpleITK not installed: skipped (just bench-volumes installs it)")
    shutil.rmtree(source)
    return failed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--series",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="series folders (default: see the module docstring)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="N",
        help="runs per cell; the median time and the highest peak are shown",
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("TOOL", "IN", "OUT", "FMT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.child:
            tool, source, out, fmt = args.child
            return child(tool, Path(source), Path(out), fmt)
        return run(args)
    except BenchError as exc:
        print(f"bench-volumes: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
