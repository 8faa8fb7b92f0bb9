"""Run one fuzz target under atheris (libFuzzer, coverage-guided).

    python -m tests.fuzz.run TARGET [libFuzzer options] [CORPUS_DIR ...]

With no corpus folder, the committed seeds (``tests/data/fuzz/TARGET``) are read and new inputs
go to ``.cache/fuzz/TARGET`` (ignored by git). Useful options: ``-runs=N`` (iterations),
``-max_total_time=S``, ``-artifact_prefix=DIR/`` (where a crashing input is written), ``-jobs``.
A crash input that shows a real defect goes to ``tests/data/regressions/`` with a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
# The modules each target exercises (instrumented for coverage); tests/fuzz/targets.py has the
# targets themselves.
MODULES: dict[str, list[str]] = {
    "pdu": ["appliance.dicom.ul", "appliance.dicom.dimse"],
    "frontend": [
        "appliance.dicom.ul",
        "appliance.dicom.frontend",
        "appliance.dicom.association_policy",
        "appliance.dicom.native_scp",
        "appliance.dicom.dimse",
        "appliance.dicom.part10",
    ],
    "scan": [
        "appliance.dicom.scan",
        "appliance.dicom.scan_walk",
        "appliance.dicom.reading",
        "appliance.dicom.limits",
    ],
    "dicomdir": [
        "appliance.dicom.media.dicomdir",
        "appliance.dicom.media.files",
        "appliance.dicom.limits",
    ],
    "zip_upload": [
        "appliance.studies.upload",
        "appliance.studies.upload_session",
        "appliance.studies.upload_checks",
    ],
}


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    name = argv[1]
    if name not in MODULES:
        sys.exit(f"unknown target {name!r}; one of {', '.join(MODULES)}")
    # coverage where the target's code is: only those modules are instrumented
    with atheris.instrument_imports(include=MODULES[name]):
        from tests.fuzz import targets

    if name not in targets.TARGETS:
        sys.exit(f"no target {name!r} in tests.fuzz.targets")
    target = targets.TARGETS[name]
    options = [arg for arg in argv[2:] if arg.startswith("-")]
    corpora = [arg for arg in argv[2:] if not arg.startswith("-")]
    if not corpora:
        work = ROOT / ".cache" / "fuzz" / name
        work.mkdir(parents=True, exist_ok=True)
        corpora = [str(work), str(ROOT / "tests" / "data" / "fuzz" / name)]
    atheris.Setup([argv[0], *options, *corpora], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
