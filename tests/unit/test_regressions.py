"""Replays every input of ``tests/data/regressions/`` (one file per defect hostile input once
found) through the one ingest path, and random byte corruptions of a real instance: each is
refused with a reason or stored readable by dcmtk (``dcmdump`` exits 0 on the stored file), and
the fast header scan never accepts what the full reader refuses (issue 16)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.dicom.ingest import Outcome
from appliance.dicom.reading import Rejected, read_instance
from appliance.dicom.scan import scan_instance
from tests import hostile
from tests.fuzz.targets import TARGETS

ACTOR = Actor.system("test")
# The reason each known regression input is refused with (a part of it).
REFUSED = {
    "nested_sequences_1000.dcm": "nested deeper than",
    "element_length_beyond_input.dcm": "truncated",
    "truncated_in_pixel_data.dcm": "truncated",
    "charset_with_nul.dcm": "SpecificCharacterSet",
    "corrupted_vr.dcm": "",
    "corrupted_short_length.dcm": "truncated",
    "vr_not_ascii_lazy_conversion.dcm": "unreadable",
    "unknown_vr_letters.dcm": "unknown VR 'UD'",
    "sop_instance_uid_unknown_vr.dcm": "",
}
CORRUPTIONS = 200


@pytest.fixture
def ctx(settings: Settings) -> AppContext:
    return prepare(settings)


def _regressions() -> list[Path]:
    """The DICOM instances; inputs named ``<fuzz target>__<defect>`` are replayed below."""
    return sorted(
        p
        for p in hostile.REGRESSIONS.iterdir()
        if p.is_file() and p.suffix == ".dcm" and "__" not in p.name
    )


def _target_regressions() -> list[Path]:
    return sorted(p for p in hostile.REGRESSIONS.iterdir() if "__" in p.name)


@pytest.mark.parametrize("path", _target_regressions(), ids=lambda p: p.name)
def test_a_fuzzer_found_input_replays_cleanly(path: Path) -> None:
    """Each input a fuzz target once crashed on, through that target again."""
    target = path.name.split("__")[0]
    assert target in TARGETS, f"{path.name}: no fuzz target {target!r}"
    TARGETS[target](path.read_bytes())


def _dcmdump_ok(path: Path) -> bool:
    return subprocess.run(["dcmdump", "-q", str(path)], capture_output=True).returncode == 0


def _agree(data: bytes) -> None:
    """The fast scan answers only where the full reader accepts, with the same values."""
    fast = scan_instance(data)
    try:
        _, full = read_instance(data)
    except Rejected:
        assert fast is None, "the fast scan accepted what the full reader refuses"
        return
    assert fast is None or fast == full


def test_every_known_regression_is_listed() -> None:
    names = {p.name for p in _regressions()}
    assert set(REFUSED) <= names, "regenerate with: python -m tests.hostile"


@pytest.mark.parametrize("path", _regressions(), ids=lambda p: p.name)
def test_a_regression_input_is_refused_or_stored_readable(ctx: AppContext, path: Path) -> None:
    data = path.read_bytes()
    _agree(data)
    result = ctx.ingestor.ingest(data, source="usb", actor=ACTOR)
    if path.name in REFUSED:
        assert result.outcome is Outcome.QUARANTINED, result
        assert REFUSED[path.name] in str(result.reason)
    if result.outcome is Outcome.STORED:
        assert result.instance_id
        key = (
            ctx.pool.get()
            .execute("SELECT storage_key FROM instances WHERE id = ?", (result.instance_id,))
            .fetchone()[0]
        )
        assert _dcmdump_ok(ctx.store.root / key)


def _corrupt(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(132, len(out))
        choice = rng.random()
        if choice < 0.7:
            out[pos] = rng.randrange(256)
        elif choice < 0.85:
            del out[pos : pos + rng.randint(1, 8)]
        else:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


def test_corrupted_instances_are_refused_or_stored_readable_by_dcmtk(ctx: AppContext) -> None:
    """A fixed, seeded corpus of byte-corrupted copies of a real instance: every one either
    quarantined or stored as a file that dcmtk parses (a C-GET of the study returns it)."""
    rng = random.Random(16)
    base = hostile.base()
    outcomes = {outcome: 0 for outcome in Outcome}
    unreadable = []
    for index in range(CORRUPTIONS):
        data = _corrupt(base, rng)
        _agree(data)
        result = ctx.ingestor.ingest(data, source="usb", actor=ACTOR)
        outcomes[result.outcome] += 1
        if result.outcome is Outcome.STORED:
            key = (
                ctx.pool.get()
                .execute("SELECT storage_key FROM instances WHERE id = ?", (result.instance_id,))
                .fetchone()[0]
            )
            if not _dcmdump_ok(ctx.store.root / key):
                unreadable.append(index)
    assert unreadable == [], f"stored but unreadable by dcmtk: variants {unreadable}"
    assert outcomes[Outcome.QUARANTINED] > 0 and outcomes[Outcome.STORED] > 0, outcomes
