"""The fuzz targets in the normal test run (issue 16): each committed seed replayed in process,
then a bounded coverage-guided atheris run per target from the seeds (new inputs go to a temp
folder; a crash fails the test and leaves its input there). ``./just fuzz SECONDS`` runs long."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "data" / "fuzz"
# Iterations per target in the normal run, sized to keep the whole fuzz part well under a minute
# on a 2-core machine (`./just fuzz` for long runs).
RUNS = {"pdu": 2000, "scan": 400, "frontend": 200, "dicomdir": 100, "zip_upload": 100}


def test_every_target_has_seeds_and_a_budget() -> None:
    assert set(RUNS) == set(TARGETS)
    for name in TARGETS:
        assert any((SEEDS / name).iterdir()), name


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_replay_cleanly(name: str) -> None:
    for path in sorted((SEEDS / name).iterdir()):
        TARGETS[name](path.read_bytes())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_bounded_fuzzing_finds_nothing(name: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            name,
            f"-runs={RUNS[name]}",
            "-seed=16",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
            str(SEEDS / name),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
    )
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-"))]
    assert result.returncode == 0 and not crashes, result.stderr[-3000:]
    assert f"Done {RUNS[name]} runs" in result.stderr
