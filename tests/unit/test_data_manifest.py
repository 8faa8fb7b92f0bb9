"""The licensed DICOM test data in tests/data matches its README, its licenses and its budget."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom import config
from pydicom.fileset import FileSet

from tests.dicom_files import NOT_SETS

DATA = Path(__file__).resolve().parents[1] / "data"
README = DATA / "README.md"
BUDGET_BYTES = 60_000_000  # 60 MB, counted like `du -sb`
MALFORMED = "malformed"
# Sets and files that must stay out: no explicit BSD/MIT license (see README.md).
EXCLUDED = (
    "wg04_nema_compression_ct1_mr1",
    "ct_chest_lidc_0001",
    "ct_chest_covid_sbu_prior_current_A002304",
    "xr_chest_cr_dx/RG1_J2KI_CR_chest.dcm",
)
_ROW = re.compile(r"^\| `(?P<set>[^`]+)`[^|]*\|(?P<cells>.*)\|\s*$")


# Not public DICOM sets (text corpora, derived hostile inputs): README.md's own sections.
DERIVED = NOT_SETS - {MALFORMED}


def set_dirs() -> list[Path]:
    return sorted(
        p
        for p in DATA.iterdir()
        if p.is_dir() and not p.name.startswith((".", "_")) and p.name not in DERIVED
    )


def files_of(set_dir: Path) -> list[Path]:
    return sorted(p for p in set_dir.rglob("*") if p.is_file())


def dicom_files_of(set_dir: Path) -> list[Path]:
    """Every file of a set except its ``*.txt`` notes and licenses."""
    return [p for p in files_of(set_dir) if p.suffix != ".txt"]


def readme_rows() -> dict[str, list[str]]:
    """Rows of the sets table in README.md: set name -> the cells after the name."""
    rows: dict[str, list[str]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            assert match["set"] not in rows, f"{match['set']} listed twice in README.md"
            rows[match["set"]] = [cell.strip() for cell in match["cells"].split("|")]
    return rows


@pytest.fixture
def strict_reading() -> Iterator[None]:
    """Make pydicom raise on invalid element values instead of warning."""
    previous = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        yield
    finally:
        config.settings.reading_validation_mode = previous


def test_there_are_sets() -> None:
    assert README.is_file()
    assert len(set_dirs()) >= 10


@pytest.mark.parametrize("set_dir", set_dirs(), ids=lambda p: p.name)
def test_set_has_readme_and_license(set_dir: Path) -> None:
    assert (set_dir / "README.txt").is_file()
    licenses = list(set_dir.glob("LICENSE*"))
    assert licenses, f"{set_dir.name} has no LICENSE file"
    for license_file in licenses:
        assert license_file.stat().st_size > 0


def test_readme_lists_exactly_the_sets() -> None:
    listed = set(readme_rows())
    present = {p.name for p in set_dirs()}
    assert listed - present == set(), "listed in README.md but missing"
    assert present - listed == set(), "present but not listed in README.md"


@pytest.mark.parametrize("set_dir", set_dirs(), ids=lambda p: p.name)
def test_readme_counts_match(set_dir: Path) -> None:
    cells = readme_rows()[set_dir.name]
    files, size = int(cells[-2].replace(",", "")), int(cells[-1].replace(",", ""))
    assert files == len(dicom_files_of(set_dir))
    assert size == sum(p.stat().st_size for p in files_of(set_dir))


def test_excluded_data_stays_out() -> None:
    for name in EXCLUDED:
        assert not (DATA / name).exists(), f"{name} has no explicit BSD/MIT license"


def test_total_size_under_budget() -> None:
    # Apparent size of every file and directory, hard links once: what `du -sb` prints.
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in [DATA, *DATA.rglob("*")]:
        st = path.lstat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    assert total < BUDGET_BYTES, f"tests/data is {total:,} bytes"


@pytest.mark.parametrize(
    "set_dir", [p for p in set_dirs() if p.name != MALFORMED], ids=lambda p: p.name
)
@pytest.mark.usefixtures("strict_reading")
def test_every_file_parses(set_dir: Path) -> None:
    files = dicom_files_of(set_dir)
    assert files
    for path in files:
        ds = pydicom.dcmread(path)
        for element in ds.iterall():
            _ = element.value  # converts raw values; invalid ones raise
        assert ds.file_meta.TransferSyntaxUID
        if path.name == "DICOMDIR":
            fileset = FileSet(ds)
            referenced = [Path(instance.path) for instance in fileset]
            assert referenced, f"{path} references no instances"
            for ref in referenced:
                assert ref.is_file()
                assert ref.resolve().is_relative_to(set_dir.resolve())


def test_malformed_files_are_documented() -> None:
    notes = (DATA / MALFORMED / "README.txt").read_text(encoding="utf-8")
    files = dicom_files_of(DATA / MALFORMED)
    assert files
    for path in files:
        assert path.name in notes, f"defect of {path.name} not described"
