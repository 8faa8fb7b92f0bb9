"""Finding the real DICOM files of tests/data."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def instance_files(set_name: str) -> list[Path]:
    """The DICOM instance files of one set (by the DICM magic), sorted; no DICOMDIR."""
    found = []
    for path in sorted((DATA / set_name).rglob("*")):
        if not path.is_file() or path.name.upper() == "DICOMDIR":
            continue
        with path.open("rb") as handle:
            head = handle.read(132)
        if head[128:132] == b"DICM":
            found.append(path)
    return found


# Folders of tests/data that are not sets of valid real-world DICOM studies: refused input,
# text corpora, fuzzing seeds and replayed crash inputs.
NOT_SETS = frozenset({"malformed", "hedging", "fuzz", "regressions"})
NOT_GOOD = NOT_SETS  # no folder of valid instances


def dicom_sets() -> list[str]:
    """The names of the real DICOM sets of tests/data (folders holding instance files)."""
    return sorted(
        p.name
        for p in DATA.iterdir()
        if p.is_dir() and p.name not in NOT_SETS and instance_files(p.name)
    )
