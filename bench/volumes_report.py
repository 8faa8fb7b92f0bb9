"""What bench-volumes measures and prints: a cell's runs (median time, highest peak), the
working memory over each program's start-up footprint, and the report: machine, per-series
table, start-up footprints, ratios against dcm2niix and SimpleITK, and the targets (met / NOT
met). See bench/volumes.py for the method."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field

FORMATS = (".nii", ".nii.gz")
TARGET_TIME_RATIO = 1.0
TARGET_MEMORY_RATIO = 2.5

Cells = dict[tuple[str, str], "Cell"]
Work = dict[tuple[str, str], "float | None"]


@dataclass
class Run:
    seconds: float
    peak_mb: float
    failure: str | None = None
    out_mb: float = 0.0


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

    @property
    def out_mb(self) -> float | None:
        if not self.runs or self.failure:
            return None
        return max(r.out_mb for r in self.runs)


def tool_version(name: str) -> str:
    if name == "dcm2niix":
        found = shutil.which("dcm2niix")
        if not found:
            return "not installed"
        out = subprocess.run([found, "-v"], capture_output=True, text=True, check=False)
        return (out.stdout.strip().splitlines() or ["?"])[-1]
    try:
        import SimpleITK as sitk

        return str(sitk.Version_VersionString())  # type: ignore[no-untyped-call]
    except ImportError:
        return "not installed"


def label(tool: str, fmt: str) -> str:
    names = {
        "ours": "ours",
        "ours-warm": "ours warm",
        "dcm2niix": f"dcm2niix -z {'n' if fmt == '.nii' else 'y'}",
        "dcm2niix-1": "dcm2niix -z y -1",
        "sitk": "SimpleITK",
    }
    return f"{names[tool]} {fmt}"


#: The program whose start-up footprint is subtracted from each tool's peak.
BASELINE = {
    "ours": "baseline-ours",
    "ours-warm": "baseline-ours",
    "dcm2niix": "baseline-dcm2niix",
    "dcm2niix-1": "baseline-dcm2niix",
    "sitk": "baseline-sitk",
}


def working_mb(cell: Cell, baseline: Cell) -> float | None:
    """Peak RSS minus the start-up footprint of the same program (see the module docstring)."""
    if cell.peak_mb is None or baseline.peak_mb is None:
        return None
    return max(0.0, cell.peak_mb - baseline.peak_mb)


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def print_machine(notes: list[str]) -> None:
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


def print_cells(cells: Cells, work: Work, size_mb: float) -> bool:
    """One line per tool and format; True when one of them failed."""
    failed = False
    print(
        f"{'tool':<24}{'wall s':>8}{'peak MB':>9}{'work MB':>9}{'work/vol':>10}"
        f"{'peak/vol':>10}{'out MB':>8}"
    )
    for (tool, fmt), cell in cells.items():
        if cell.failure:
            failed = True
            print(f"{label(tool, fmt):<24} FAILED: {cell.failure}")
            continue
        assert cell.seconds is not None and cell.peak_mb is not None
        used = work[(tool, fmt)]
        print(
            f"{label(tool, fmt):<24}{cell.seconds:>8.2f}{cell.peak_mb:>9.0f}"
            f"{used if used is not None else float('nan'):>9.0f}"
            f"{fmt_ratio(used, size_mb):>10}{cell.peak_mb / size_mb:>9.2f}x"
            f"{cell.out_mb or 0.0:>8.1f}"
        )
    return failed


def print_baselines(baselines: dict[str, Cell]) -> None:
    for name, cell in baselines.items():
        if cell.seconds is not None and cell.peak_mb is not None:
            print(f"{'start-up ' + name[9:]:<24}{cell.seconds:>8.2f}{cell.peak_mb:>9.0f}")


def print_ratios(cells: Cells, work: Work, tools: list[str]) -> None:
    """Ours (cold and warm) against each peer, per format: time, peak and working memory."""
    for mine in ("ours", "ours-warm"):
        for fmt in FORMATS:
            own = cells[(mine, fmt)]
            peers = [("dcm2niix", "dcm2niix")]
            if fmt == ".nii.gz":
                peers.append(("dcm2niix -1", "dcm2niix-1"))
            if "sitk" in tools:
                peers.append(("SimpleITK", "sitk"))
            for name, peer in peers:
                other = cells[(peer, fmt)]
                print(
                    f"ratio {label(mine, '').strip()}/{name + ' ' + fmt:<20} time "
                    f"{fmt_ratio(own.seconds, other.seconds)}, peak "
                    f"{fmt_ratio(own.peak_mb, other.peak_mb)}, work "
                    f"{fmt_ratio(work[(mine, fmt)], work[(peer, fmt)])}"
                )


def print_targets(cells: Cells, work: Work, size_mb: float) -> None:
    """The time target (ours no slower than dcm2niix, .nii.gz) and the memory target."""
    for mine, peer, name in (
        ("ours", "dcm2niix", "dcm2niix -z y"),
        ("ours", "dcm2niix-1", "dcm2niix -z y -1"),
        ("ours-warm", "dcm2niix-1", "dcm2niix -z y -1"),
    ):
        own, other = cells[(mine, ".nii.gz")], cells[(peer, ".nii.gz")]
        if own.seconds is not None and other.seconds is not None:
            met = own.seconds <= TARGET_TIME_RATIO * other.seconds
            print(
                f"target time ({label(mine, '.nii.gz')} <= {name}): "
                f"{'met' if met else 'NOT met'}"
            )
    ours_work = [w for (t, _), w in work.items() if t.startswith("ours") and w is not None]
    if ours_work:
        used = max(ours_work)
        met = used <= TARGET_MEMORY_RATIO * size_mb
        peak = max((c.peak_mb or 0.0) for (t, _), c in cells.items() if t.startswith("ours"))
        print(
            f"target memory (ours working memory {used:.0f} MB <= {TARGET_MEMORY_RATIO} x "
            f"{size_mb:.1f} MB): {'met' if met else 'NOT met'} "
            f"(absolute peak {peak:.0f} MB = {peak / size_mb:.2f}x)"
        )
