"""The worklist's urgency order and urgent filter on crafted index rows, against the rule
written out here: a study's rank is that of its most urgent finished (completed or
needs_review) analysis whose urgency no radiologist cleared; unreported ranked studies come
first, most urgent first, then everything by newest arrival."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from appliance.audit.models import Actor
from appliance.db.connection import open_database
from appliance.db.migrate import apply_migrations
from appliance.patients.service import fold, search_key
from appliance.studies.models import WorklistSort
from appliance.studies.worklist import worklist

ACTOR = Actor(name="tech", role="technician")
RANK = {"critical": 2, "urgent": 1}
#: (analysis status, urgency, review) per study; a study may have several analyses.
CASES: dict[str, list[tuple[str, str | None, str | None]]] = {
    "critical": [("completed", "critical", None)],
    "critical-cleared": [("completed", "critical", "cleared")],
    "critical-confirmed": [("needs_review", "critical", "confirmed")],
    "critical-failed": [("failed", "critical", None)],
    "critical-running": [("running", "critical", None)],
    "urgent": [("completed", "urgent", None)],
    "urgent-and-routine": [("completed", "routine", None), ("completed", "urgent", None)],
    "urgent-then-critical-cleared": [
        ("completed", "urgent", None),
        ("completed", "critical", "cleared"),
    ],
    "critical-signed": [("completed", "critical", None)],
    "critical-amended": [("completed", "critical", None)],
    "critical-draft": [("completed", "critical", None)],
    "routine": [("completed", "routine", None)],
    "no-urgency": [("completed", None, None)],
    "nothing": [],
}
REPORTS = {"critical-signed": "final", "critical-amended": "amended", "critical-draft": "draft"}


def _rank(name: str) -> int:
    return max(
        (
            RANK.get(urgency or "", 0)
            for status, urgency, review in CASES[name]
            if status in ("completed", "needs_review") and review != "cleared"
        ),
        default=0,
    )


def _signed(name: str) -> bool:
    return REPORTS.get(name) in ("final", "amended")


def _add_study(db: sqlite_utils.Database, study_id: str, n: int, when: str) -> None:
    """Study ``study_id`` of its own patient ``p-<study_id>`` (MRN-<n>), arrived ``when``."""
    db.execute(
        "INSERT INTO patients (id, mrn, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (f"p-{study_id}", f"MRN-{n}", when, when),
    )
    db.execute(
        "INSERT INTO studies (id, patient_id, study_uid, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (study_id, f"p-{study_id}", f"2.25.{n + 1}", when, when),
    )


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    database = open_database(tmp_path / "radiant.db")
    apply_migrations(database)
    ts = itertools.count()
    for n, (name, analyses) in enumerate(CASES.items()):
        when = f"2026-01-01T00:{n:02d}:00.000000+00:00"  # arrival order: the order of CASES
        _add_study(database, name, n, when)
        for status, urgency, review in analyses:
            database.execute(
                "INSERT INTO analyses (id, study_id, analysis_type, status, urgency,"
                " urgency_review, created_at) VALUES (?, ?, 'primary', ?, ?, ?, ?)",
                (f"a-{next(ts)}", name, status, urgency, review, when),
            )
        if name in REPORTS:
            database.execute(
                "INSERT INTO reports (id, study_id, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (f"r-{name}", name, REPORTS[name], when, when),
            )
    return database


def test_urgency_order_puts_unreported_ranked_studies_first(db: sqlite_utils.Database) -> None:
    newest_first = list(reversed(CASES))
    expected = sorted(
        newest_first, key=lambda name: -(_rank(name) if not _signed(name) else 0)
    )  # sorted() is stable: ties keep the newest-first order
    page = worklist(db, ACTOR, sort="urgency", limit=100)
    assert [item.id for item in page.items] == expected
    assert page.total == len(CASES)
    levels = {item.id: item.urgency for item in page.items}
    assert levels == {n: ("routine", "urgent", "critical")[_rank(n)] for n in CASES}


@pytest.mark.parametrize("size", [1, 3, 4, 5, 7, 14])
@pytest.mark.parametrize("urgent", [False, True])
def test_pages_of_the_urgency_order_join_up(
    db: sqlite_utils.Database, size: int, urgent: bool
) -> None:
    """The urgency order is read as ranked studies, then the rest: pages of every size, some
    across that boundary, join up to the whole list, and a page past the end is empty."""
    whole = [
        item.id for item in worklist(db, ACTOR, sort="urgency", urgent=urgent, limit=100).items
    ]
    pages = [
        worklist(db, ACTOR, sort="urgency", urgent=urgent, limit=size, offset=o)
        for o in range(0, len(CASES) + size, size)
    ]
    assert list(itertools.chain.from_iterable([i.id for i in p.items] for p in pages)) == whole
    assert {p.total for p in pages} == {len(whole)}
    assert pages[-1].items == []


def test_urgent_filter_keeps_ranked_studies_reported_or_not(db: sqlite_utils.Database) -> None:
    page = worklist(db, ACTOR, urgent=True, sort="arrival", limit=100)
    assert [item.id for item in page.items] == [n for n in reversed(CASES) if _rank(n) > 0]
    assert page.total == len(page.items)


#: a last name per study (the patients of the fixture), for the search below
NAMES = {
    name: ("Hélène Martin", "Marc Martinez", "Léa Dupont")[n % 3] for n, name in enumerate(CASES)
}


@pytest.mark.parametrize(
    "words", ["martin", "MARTIN helene", "dupont", "mrn-1", "tin", "martin dupont", "zzz"]
)
@pytest.mark.parametrize("urgent", [False, True])
@pytest.mark.parametrize("sort", ["urgency", "arrival", "status"])
def test_search_keeps_the_studies_whose_patient_matches_every_word(
    db: sqlite_utils.Database, words: str, urgent: bool, sort: WorklistSort
) -> None:
    """The search finds the matching patients first, then their studies: the page and its
    total are the unsearched list's studies whose patient's MRN or names contain every word
    (case- and accent-insensitively), in the same order."""
    keys: dict[str, str] = {}
    for n, name in enumerate(CASES):
        first, last = NAMES[name].split()
        row = {"mrn": f"MRN-{n}", "first_name": first, "last_name": last}
        keys[name] = search_key(row)
        db.execute(
            "UPDATE patients SET first_name = ?, last_name = ?, search_key = ? WHERE id = ?",
            (first, last, keys[name], f"p-{name}"),
        )
    whole = worklist(db, ACTOR, sort=sort, urgent=urgent, limit=100)
    expected = [i.id for i in whole.items if all(w in keys[i.id] for w in fold(words).split())]
    found = worklist(db, ACTOR, sort=sort, urgent=urgent, search=words, limit=100)
    assert [item.id for item in found.items] == expected
    assert found.total == len(expected)


_STATUSES = ("queued", "running", "completed", "needs_review", "failed", "cancelled")
_OP = st.tuples(
    st.sampled_from(["insert", "status", "urgency", "review", "move", "delete"]),
    st.integers(0, 7),  # which analysis (of those there), or which study
    st.sampled_from(_STATUSES),
    st.sampled_from([None, "routine", "urgent", "critical"]),
    st.sampled_from([None, "confirmed", "cleared"]),
)


@given(ops=st.lists(_OP, max_size=25))
@hypothesis_settings(max_examples=300, deadline=None)
def test_the_rank_read_model_follows_every_change_of_the_analyses(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[tuple[str, int, str, str | None, str | None]],
) -> None:
    """``study_ranks`` is kept by triggers: after any sequence of inserts, status, urgency and
    review changes, moves to another study and deletes of analyses, it holds exactly the rank
    the rule above gives each study (and no row for a routine one)."""
    database = open_database(tmp_path_factory.mktemp("ranks") / "radiant.db")
    apply_migrations(database)
    studies = [f"s-{n}" for n in range(3)]
    when = "2026-01-01T00:00:00.000000+00:00"
    for n, sid in enumerate(studies):
        _add_study(database, sid, n, when)
    made = 0
    for op, which, status, urgency, review in ops:
        ids = [r[0] for r in database.execute("SELECT id FROM analyses ORDER BY id")]
        target = ids[which % len(ids)] if ids else None
        if op == "insert" or target is None:
            made += 1
            database.execute(
                "INSERT INTO analyses (id, study_id, analysis_type, status, urgency,"
                " urgency_review, created_at) VALUES (?, ?, 'primary', ?, ?, ?, ?)",
                (f"a-{made:03d}", studies[which % 3], status, urgency, review, when),
            )
        elif op == "delete":
            database.execute("DELETE FROM analyses WHERE id = ?", (target,))
        else:
            column, value = {
                "status": ("status", status),
                "urgency": ("urgency", urgency),
                "review": ("urgency_review", review),
                "move": ("study_id", _another_study(database, target, studies, which)),
            }[op]
            database.execute(f"UPDATE analyses SET {column} = ? WHERE id = ?", (value, target))
        expected: dict[str, int] = {}
        for sid, a_status, a_urgency, a_review in database.execute(
            "SELECT study_id, status, urgency, urgency_review FROM analyses"
        ):
            if a_status in ("completed", "needs_review") and a_review != "cleared":
                rank = RANK.get(a_urgency or "", 0)
                if rank:
                    expected[sid] = max(expected.get(sid, 0), rank)
        assert dict(database.execute("SELECT study_id, rank FROM study_ranks").fetchall()) == (
            expected
        )


def _another_study(db: sqlite_utils.Database, analysis: str, studies: list[str], n: int) -> str:
    """One of the studies the analysis is not in."""
    (current,) = db.execute("SELECT study_id FROM analyses WHERE id = ?", (analysis,)).fetchone()
    others = [sid for sid in studies if sid != current]
    return others[n % len(others)]
