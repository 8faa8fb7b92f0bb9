"""Volume benchmark: our reconstruction against dcm2niix and SimpleITK, DICOM series to NIfTI.

For the largest series of tests/data (by pixels) and the 133-slice LIDC chest CT from
``../shared/data/dicom/ct_chest_lidc_0001`` when present, each tool turns a private copy of the
series' files into NIfTI in a FRESH subprocess, ``--repeat`` times (median shown):

* ours: ``appliance.volumes.reconstruct.build_volumes`` then ``appliance.volumes.nifti``
  (``.nii``: ``to_nifti_image`` saved by nibabel; ``.nii.gz``: ``write_nifti``, gzip level 6 in
  one thread, exactly what the appliance stores);
* dcm2niix ``-z n`` (``.nii``) and ``-z y`` (``.nii.gz``, through pigz when installed, i.e. on
  every core), with ``-b n`` (no JSON sidecar) so both write NIfTI only;
* SimpleITK ``ImageSeriesReader`` (GDCM series file names, sorted by position) and
  ``WriteImage`` to ``.nii`` / ``.nii.gz``.

Both formats are measured: ``.nii`` compares reconstruction and writing alone (fair: nobody
compresses), ``.nii.gz`` is the end-to-end cost of what each tool would store. Every run
includes the interpreter or program start-up. Wall time is measured around the child; peak
memory is the child's own ``ru_maxrss`` from ``wait4``. A Python child that only imports our
modules shows the fixed cost of the interpreter and libraries.

Targets (printed as met / NOT met): ours no slower than dcm2niix end to end (``.nii.gz``),
and our peak memory at most 2.5x the size of the reconstructed volume.

A benchmark, not a test: it asserts nothing. Usage: ``.venv/bin/python bench/volumes.py
[--series DIR ...] [--repeat N]`` (``just bench-volumes``, which installs SimpleITK from the
``bench`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
OPTIONAL_SERIES = ROOT.parent / "shared" / "data" / "dicom" / "ct_chest_lidc_0001"
FORMATS = (".nii", ".nii.gz")
TARGET_TIME_RATIO = 1.0
TARGET_MEMORY_RATIO = 2.5


class BenchError(Exception):
    """A setup problem that stops the benchmark."""


# ---- children ---------------------------------------------------------------------------------


def child(tool: str, source: Path, out: Path, fmt: str) -> int:
    """Run one tool in this (fresh) process; prints the volume shapes written."""
    if tool == "baseline":
        import nibabel  # noqa: F401
        import numpy  # noqa: F401
        import pydicom  # noqa: F401

        import appliance.volumes.nifti
        import appliance.volumes.reconstruct  # noqa: F401

        return 0
    files = sorted(p for p in source.iterdir() if p.is_file())
    if tool == "ours":
        import nibabel as nib

        from appliance.volumes.nifti import to_nifti_image, write_nifti
        from appliance.volumes.reconstruct import build_volumes

        for n, volume in enumerate(v for v in build_volumes(files) if v.is_volume):
            path = out / f"vol_{n}{fmt}"
            if fmt == ".nii":
                nib.save(to_nifti_image(volume), path)
            else:
                write_nifti(volume, path)
            print("x".join(str(s) for s in volume.voxels.shape[::-1]), volume.voxels.dtype)
        return 0
    if tool == "sitk":
        import SimpleITK as sitk

        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(str(source))
        reader.SetFileNames(names)
        image = reader.Execute()
        sitk.WriteImage(image, str(out / f"vol{fmt}"), useCompression=fmt == ".nii.gz")
        print("x".join(str(s) for s in image.GetSize()), image.GetPixelIDTypeAsString())
        return 0
    raise BenchError(f"unknown child tool {tool}")


# ---- measuring --------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_mb: float
    failure: str | None = None


@dataclass
class Cell:
    tool: str
    fmt: str
    runs: list[Run] = field(default_factory=list)

    @property
    def failure(self) -> str | None:
        return next((r.failure for r in self.runs if r.failure), None)

    @property
    def seconds(self) -> float | None:
        if not self.runs or self.failure:
            return None
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_mb(self) -> float | None:
        if not self.runs or self.failure:
            return None
        return max(r.peak_mb for r in self.runs)


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


def measure(command: list[str], out: Path, log: Path) -> Run:
    """Run ``command`` once in a fresh process: wall time and its own peak RSS (wait4)."""
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
    written = [p for p in out.rglob("*") if p.is_file() and p.name.endswith((".nii", ".nii.gz"))]
    failure = None
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        failure = f"exit {code}: {' / '.join(tail)}"
    elif not written and "baseline" not in command:
        failure = "wrote no NIfTI file"
    return Run(seconds, peak_mb, failure)


def commands(tool: str, source: Path, out: Path, fmt: str) -> list[str]:
    if tool == "dcm2niix":
        compress = "n" if fmt == ".nii" else "y"
        return ["dcm2niix", "-z", compress, "-b", "n", "-f", "vol_%s", "-o", str(out), str(source)]
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


# ---- report -----------------------------------------------------------------------------------


def tool_version(name: str) -> str:
    if name == "dcm2niix":
        found = shutil.which("dcm2niix")
        if not found:
            return "not installed"
        out = subprocess.run([found, "-v"], capture_output=True, text=True, check=False)
        return (out.stdout.strip().splitlines() or ["?"])[-1]
    try:
        import SimpleITK as sitk

        return str(sitk.Version_VersionString())
    except ImportError:
        return "not installed"


def label(tool: str, fmt: str) -> str:
    names = {
        "ours": "ours",
        "dcm2niix": f"dcm2niix -z {'n' if fmt == '.nii' else 'y'}",
        "sitk": "SimpleITK",
    }
    return f"{names[tool]} {fmt}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


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
    tools = ["ours", "dcm2niix"]
    if tool_version("sitk") != "not installed":
        tools.append("sitk")
    series_list, notes = choose(args.series)
    print("== machine")
    print(f"{'cpu':<22} {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{'python':<22} {platform.python_version()}")
    print(
        f"{'dcm2niix':<22} {tool_version('dcm2niix')}"
        f" (pigz {'present' if shutil.which('pigz') else 'absent'})"
    )
    print(f"{'SimpleITK':<22} {tool_version('sitk')}")
    for note in notes:
        print(f"{'note':<22} {note}")
    failed = False
    with workspace() as workdir:
        for series in series_list:
            source = workdir / "in" / series.name.replace("/", "_")
            source.mkdir(parents=True)
            for path in series.files:
                shutil.copyfile(path, source / path.name)
                (source / path.name).read_bytes()  # warm the page cache for every tool alike
            size_mb, shapes = volume_mb(series, workdir)
            print(f"\n== {series.name}")
            print(f"{'files':<22} {len(series.files)} ({series.size / 2**20:.1f} MB)")
            print(f"{'our volume(s)':<22} {shapes} = {size_mb:.1f} MB")
            baseline = Cell("baseline", "")
            for _ in range(args.repeat):
                baseline.runs.append(
                    measure(
                        commands("baseline", source, workdir / "out", ""),
                        workdir / "out",
                        workdir / "baseline.log",
                    )
                )
            cells = {(t, f): Cell(t, f) for f in FORMATS for t in tools}
            for _ in range(args.repeat):
                for (tool, fmt), cell in cells.items():
                    out = workdir / "out"
                    cell.runs.append(
                        measure(commands(tool, source, out, fmt), out, workdir / f"{tool}.log")
                    )
            print(f"{'tool':<24}{'wall s':>9}{'peak MB':>10}{'peak/volume':>13}")
            for (tool, fmt), cell in cells.items():
                if cell.failure:
                    failed = True
                    print(f"{label(tool, fmt):<24} FAILED: {cell.failure}")
                    continue
                assert cell.seconds is not None and cell.peak_mb is not None
                print(
                    f"{label(tool, fmt):<24}{cell.seconds:>9.2f}{cell.peak_mb:>10.0f}"
                    f"{cell.peak_mb / size_mb:>12.2f}x"
                )
            if baseline.seconds is not None and baseline.peak_mb is not None:
                print(
                    f"{'python + imports only':<24}{baseline.seconds:>9.2f}"
                    f"{baseline.peak_mb:>10.0f}"
                )
            for fmt in FORMATS:
                ours = cells[("ours", fmt)]
                print(
                    f"ratio ours/dcm2niix {fmt:<8} time "
                    f"{fmt_ratio(ours.seconds, cells[('dcm2niix', fmt)].seconds)}, peak "
                    f"{fmt_ratio(ours.peak_mb, cells[('dcm2niix', fmt)].peak_mb)}"
                )
                if "sitk" in tools:
                    print(
                        f"ratio ours/SimpleITK {fmt:<7} time "
                        f"{fmt_ratio(ours.seconds, cells[('sitk', fmt)].seconds)}, peak "
                        f"{fmt_ratio(ours.peak_mb, cells[('sitk', fmt)].peak_mb)}"
                    )
            ours_gz, peer_gz = cells[("ours", ".nii.gz")], cells[("dcm2niix", ".nii.gz")]
            if ours_gz.seconds is not None and peer_gz.seconds is not None:
                met = ours_gz.seconds <= TARGET_TIME_RATIO * peer_gz.seconds
                print(f"target time (ours .nii.gz <= dcm2niix -z y): {'met' if met else 'NOT met'}")
            peak = max((c.peak_mb or 0.0) for (t, _), c in cells.items() if t == "ours")
            met = peak <= TARGET_MEMORY_RATIO * size_mb
            print(
                f"target memory (ours peak {peak:.0f} MB <= {TARGET_MEMORY_RATIO} x "
                f"{size_mb:.1f} MB): {'met' if met else 'NOT met'}"
            )
            if "sitk" not in tools:
                print("SimpleITK not installed: skipped (just bench-volumes installs it)")
            shutil.rmtree(source)
    return 1 if failed else 0


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
