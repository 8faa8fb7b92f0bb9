"""Every Python module of the project holds one job: none is longer than 400 lines.

Migrations (SQL) are not Python and are not counted. A module that grows past the limit is
split along the sections it marks (issue: one job per module).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "appliance", "ai", "ui", "sync", "provisioning", "radiant", "radiant_common", "bench", "image",
)  # fmt: skip
LIMIT = 400


def _modules() -> list[Path]:
    found: list[Path] = []
    for package in PACKAGES:
        base = ROOT / package
        if base.is_dir():
            found.extend(p for p in base.rglob("*.py") if "migrations" not in p.parts)
    return sorted(found)


def test_the_project_has_modules_to_measure() -> None:
    assert len(_modules()) > 100


def test_no_module_is_longer_than_the_limit() -> None:
    too_long = {
        str(path.relative_to(ROOT)): count
        for path in _modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert too_long == {}, f"modules over {LIMIT} lines (split them): {too_long}"
