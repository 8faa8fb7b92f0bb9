"""Long fuzzing: every target (or those named) for SECONDS each, restarted after a crash until
its time is spent; crash inputs go to ``.cache/fuzz/crashes/``, new corpus inputs to
``.cache/fuzz/<target>/``. Prints executions, coverage and crashes per target.

    python -m tests.fuzz.long SECONDS [TARGET ...]      (the Justfile's `fuzz` recipe)
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
_RUNS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_COV = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)")


def fuzz(name: str, seconds: int) -> dict[str, object]:
    crashes_dir = ROOT / ".cache" / "fuzz" / "crashes"
    crashes_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + seconds
    executions, crashes, cov, ft, corpus = 0, [], "0", "0", "0"
    while (left := int(deadline - time.monotonic())) > 5:
        before = set(crashes_dir.iterdir())
        result = subprocess.run(
            [sys.executable, "-m", "tests.fuzz.run", name, f"-max_total_time={left}",
             "-print_final_stats=1", f"-artifact_prefix={crashes_dir}/{name}-"],
            cwd=ROOT, capture_output=True, text=True, errors="replace",
        )  # fmt: skip
        out = result.stdout + result.stderr
        executions += sum(int(m) for m in _RUNS.findall(out))
        for match in _COV.finditer(out):
            cov, ft, corpus = match.groups()
        new = sorted(set(crashes_dir.iterdir()) - before)
        crashes += [str(p.relative_to(ROOT)) for p in new]
        if result.returncode == 0 or not new:
            break
    return {"target": name, "seconds": seconds, "executions": executions, "coverage": cov,
            "features": ft, "corpus": corpus, "crashes": crashes}  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    seconds = int(argv[1])
    names = argv[2:] or list(TARGETS)
    for name in names:
        report = fuzz(name, seconds)
        print(" ".join(f"{k}={v}" for k, v in report.items()), flush=True)


if __name__ == "__main__":
    main(sys.argv)
