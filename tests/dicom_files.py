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
