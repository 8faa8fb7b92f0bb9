"""The audit trail for people: names and MRNs resolved at display time (the rows keep ids only),
time-range filters, a CSV export that is audited, bounded, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlite_utils
from fastapi.testclient import TestClient

from appliance.audit import export
from appliance.audit.models import Actor
from appliance.db.rows import utc_now
from appliance.errors import InvalidInput

Headers = Callable[[str], dict[str, str]]
HOSTILE_MRN = "=HYPERLINK(\"http://x\",\"y\")"


def _patients(client: TestClient, headers: dict[str, str]) -> list[str]:
    ids = []
    for mrn in ("MRN-AUD-1", HOSTILE_MRN):
        created = client.post(
            "/api/patients",
            headers=headers,
            json={"patient_id": mrn, "first_name": "Ann", "last_name": "Lee"},
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


def test_pages_show_full_names_and_mrns_but_rows_hold_ids(
    client: TestClient, db: sqlite_utils.Database, as_role: Headers
) -> None:
    admin = as_role("admin")
    db.execute("UPDATE users SET full_name = 'Ada Admin' WHERE username = 'admin-user'")
    ids = _patients(client, admin)
    page = client.get("/api/audit", params={"action": "patient."}, headers=admin).json()
    shown = {i["object_id"]: i for i in page["items"] if i["action"] == "patient.create"}
    assert shown[ids[0]]["mrn"] == "MRN-AUD-1" and shown[ids[1]]["mrn"] == HOSTILE_MRN
    assert shown[ids[0]]["actor_name"] == "Ada Admin"
    stored = db.execute("SELECT detail FROM audit_log WHERE action = 'patient.create'").fetchall()
    assert all("MRN-AUD-1" not in (row[0] or "") for row in stored)  # resolved, never stored
    reads = db.execute("SELECT actor, detail FROM audit_log WHERE action = 'audit.read'")
    (read,) = reads.fetchall()
    assert read[0] == "admin-user" and json.loads(read[1])["action"] == "patient."
    # A technician neither reads nor exports the trail.
    tech = as_role("technician")
    assert client.get("/api/audit", headers=tech).status_code == 403
    assert client.get("/api/audit/export.csv", headers=tech).status_code == 403


def test_csv_export_of_a_range_is_audited_and_spreadsheet_safe(
    client: TestClient, db: sqlite_utils.Database, as_role: Headers
) -> None:
    admin = as_role("admin")
    ids = _patients(client, admin)
    today = utc_now().date()
    response = client.get(
        "/api/audit/export.csv",
        params={"action": "patient.", "since": today.isoformat(), "until": today.isoformat()},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == export.COLUMNS
    by_object = {r["object_id"]: r for r in rows}
    assert by_object[ids[0]]["mrn"] == "MRN-AUD-1"
    assert by_object[ids[1]]["mrn"] == "'" + HOSTILE_MRN  # a formula never runs
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)  # oldest first
    (exported,) = db.execute("SELECT detail FROM audit_log WHERE action = 'audit.export'")
    assert json.loads(exported[0])["rows"] == len(rows)

    # Another day's range holds none of them; a bad date is refused.
    yesterday = (today - timedelta(days=1)).isoformat()
    empty = client.get(
        "/api/audit/export.csv", params={"since": yesterday, "until": yesterday}, headers=admin
    )
    assert list(csv.DictReader(io.StringIO(empty.text))) == []
    bad = client.get("/api/audit/export.csv", params={"since": "tomorrow"}, headers=admin)
    assert bad.status_code == 422


def test_an_export_larger_than_the_limit_is_refused(
    client: TestClient, db: sqlite_utils.Database, as_role: Headers
) -> None:
    _patients(client, as_role("admin"))
    with pytest.raises(InvalidInput, match="narrow"):
        export.export_csv(db, Actor.system("test"), max_rows=1)
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'audit.export'").fetchone()[
        0
    ] == 0
