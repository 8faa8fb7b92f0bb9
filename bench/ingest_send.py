"""The ingest benchmark's input set (copied once, split for parallel associations) and storescu.

A run is only counted when storescu exited 0 and every C-STORE response was Success (PS3.4 B.2.3).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.ingest_peers import (
    CALLING_AE,
    HOST,
    STORE_RESPONSE,
    STORESCU_TIMEOUT,
    BenchError,
    bench_env,
    stop_process,
)

PARALLEL = (4, 8)  # parallel association counts measured besides one


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file: 128-byte preamble then ``DICM``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


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
    parts = {n: [workdir / "input" / f"split{n}" / f"part{i}" for i in range(n)] for n in PARALLEL}
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
