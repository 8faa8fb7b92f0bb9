"""The hash-chained audit trail: verification, tamper detection, API paging, no PHI."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils
from fastapi.testclient import TestClient

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.db.connection import open_database, transaction
from appliance.db.migrate import apply_migrations
from radiant.cli import main as radiant

ACTOR = Actor(name="tester", role="admin", client="127.0.0.1")


@pytest.fixture
def chain(tmp_path: Path) -> sqlite_utils.Database:
    db = open_database(tmp_path / "a.db")
    apply_migrations(db)
    for n in range(1, 6):
        audit.record(
            db, ACTOR, "thing.touch", object_type="thing", object_id=f"id-{n}", detail={"n": n}
        )
    return db


def _tamper(db: sqlite_utils.Database, sql: str, *params: object) -> None:
    """Plain SQL, as an intruder with the database file would do (triggers dropped first)."""
    db.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    db.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    db.execute(sql, params)


def test_intact_chain_verifies(chain: sqlite_utils.Database) -> None:
    report = audit.verify(chain)
    assert report.ok and report.rows == 5 and report.first_bad_id is None


def test_rows_link_to_their_predecessor(chain: sqlite_utils.Database) -> None:
    rows = chain.execute("SELECT id, prev_hash, hash FROM audit_log ORDER BY id").fetchall()
    assert rows[0][1] == audit.GENESIS
    for previous, current in itertools.pairwise(rows):
        assert current[1] == previous[2]


def test_plain_update_and_delete_are_refused(chain: sqlite_utils.Database) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        chain.execute("UPDATE audit_log SET outcome = 'failure' WHERE id = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        chain.execute("DELETE FROM audit_log WHERE id = 2")


def test_edited_row_is_named(chain: sqlite_utils.Database) -> None:
    _tamper(chain, "UPDATE audit_log SET actor = 'someone-else' WHERE id = 3")
    report = audit.verify(chain)
    assert not report.ok and report.first_bad_id == 3
    assert "edited" in (report.reason or "")


def test_edit_with_recomputed_hash_breaks_the_next_link(chain: sqlite_utils.Database) -> None:
    cursor = chain.execute("SELECT * FROM audit_log WHERE id = 3")
    row = dict(zip([c[0] for c in cursor.description], cursor.fetchone(), strict=True))
    row["outcome"] = "failure"
    forged = audit._digest(row)
    _tamper(chain, "UPDATE audit_log SET outcome = 'failure', hash = ? WHERE id = 3", forged)
    report = audit.verify(chain)
    assert not report.ok and report.first_bad_id == 4


def test_deleted_middle_row_is_detected(chain: sqlite_utils.Database) -> None:
    _tamper(chain, "DELETE FROM audit_log WHERE id = 2")
    report = audit.verify(chain)
    assert not report.ok and report.first_bad_id == 3


def test_deleted_newest_rows_are_detected(chain: sqlite_utils.Database) -> None:
    _tamper(chain, "DELETE FROM audit_log WHERE id >= 4")
    report = audit.verify(chain)
    assert not report.ok and report.first_bad_id == 4
    assert "missing" in (report.reason or "")
    # and a row written after the truncation does not paper over it
    audit.record(chain, ACTOR, "thing.touch")
    assert not audit.verify(chain).ok


def test_audit_row_rolls_back_with_its_transaction(chain: sqlite_utils.Database) -> None:
    with pytest.raises(RuntimeError), transaction(chain):
        audit.record(chain, ACTOR, "thing.touch")
        raise RuntimeError("the mutation failed")
    assert chain.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 5
    assert audit.verify(chain).ok


def test_cli_audit_verify_exit_codes(
    settings: Settings,
    client: TestClient,
    as_role: Callable[[str], dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client.get("/api/patients", headers=as_role("admin"))
    assert radiant(["audit", "verify", "--data-dir", str(settings.data_dir)]) == 0
    assert "intact" in capsys.readouterr().out
    db = open_database(settings.db_path)
    _tamper(db, "UPDATE audit_log SET client = '10.0.0.66' WHERE id = 1")
    db.conn.close()
    assert radiant(["audit", "verify", "--data-dir", str(settings.data_dir)]) == 1
    assert "broken at row 1" in capsys.readouterr().err


def test_api_pages_newest_first_and_filters(
    client: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    admin = as_role("admin")
    for n in range(3):
        created = client.post(
            "/api/patients",
            headers=admin,
            json={"patient_id": f"MRN-{n}", "first_name": "Ann", "last_name": f"Lee{n}"},
        )
        assert created.status_code == 201
    page = client.get(
        "/api/audit", params={"action": "patient.create", "limit": 2}, headers=admin
    ).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert page["items"][0]["id"] > page["items"][1]["id"]
    assert {i["actor"] for i in page["items"]} == {"admin-user"}
    prefix = client.get("/api/audit", params={"action": "auth."}, headers=admin).json()
    assert prefix["total"] >= 1
    assert all(i["action"].startswith("auth.") for i in prefix["items"])
    by_actor = client.get("/api/audit", params={"actor": "nobody"}, headers=admin).json()
    assert by_actor["total"] == 0
    assert client.get("/api/audit/verify", headers=admin).json()["ok"] is True
    assert client.get("/api/audit", params={"limit": 0}, headers=admin).status_code == 422


def test_no_phi_in_audit_rows(
    client: TestClient, db: sqlite_utils.Database, as_role: Callable[[str], dict[str, str]]
) -> None:
    tech = as_role("technician")
    body = {
        "patient_id": "MRN-PRIVATE-77",
        "first_name": "Zelda",
        "last_name": "Quixote",
        "birth_date": "1950-02-03",
        "phone": "+33 1 23 45 67 89",
    }
    patient = client.post("/api/patients", json=body, headers=tech).json()
    client.get("/api/patients", params={"search": "Quixote"}, headers=tech)
    client.get(f"/api/patients/{patient['id']}", headers=tech)
    client.patch(f"/api/patients/{patient['id']}", json={"last_name": "Quichotte"}, headers=tech)
    dump = json.dumps(db.execute("SELECT * FROM audit_log").fetchall())
    for value in ("MRN-PRIVATE-77", "Zelda", "Quixote", "Quichotte", "1950", "+33"):
        assert value not in dump
    assert patient["id"] in dump
