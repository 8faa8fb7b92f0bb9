"""Patients over the HTTP API on a real SQLite file: CRUD, search, history, validation, audit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlite_utils
from fastapi.testclient import TestClient

from appliance.audit import service as audit_service
from appliance.db.connection import transaction

Headers = Callable[[str], dict[str, str]]
PROBLEM = "application/problem+json"


def _new(
    client: TestClient, headers: dict[str, str], mrn: str, first: str, last: str, **extra: object
) -> dict[str, object]:
    response = client.post(
        "/api/patients",
        headers=headers,
        json={"patient_id": mrn, "first_name": first, "last_name": last, **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _add_study(
    db: sqlite_utils.Database, patient_id: str, uid: str, date: str | None, created: str
) -> None:
    with transaction(db):
        db.execute(
            "INSERT INTO studies (id, patient_id, study_uid, study_date, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (f"study-{uid}", patient_id, uid, date, created, created),
        )


def test_create_and_read(client: TestClient, as_role: Headers) -> None:
    tech = as_role("technician")
    created = _new(
        client,
        tech,
        "MRN123",
        "John",
        "Doe",
        birth_date="1961-04-12",
        sex="M",
        phone="+1 (555) 010-0000",
        email="john@example.org",
        address="1 Main St",
    )
    assert created["patient_id"] == "MRN123"
    assert created["id"] != "MRN123" and len(str(created["id"])) == 36
    assert created["source"] == "manual" and created["demographics_conflict"] is False
    read = client.get(f"/api/patients/{created['id']}", headers=as_role("viewer"))
    assert read.status_code == 200
    assert read.json() == created


def test_duplicate_mrn_is_a_conflict(client: TestClient, as_role: Headers) -> None:
    tech = as_role("technician")
    _new(client, tech, "MRN-1", "Ann", "Lee")
    again = client.post(
        "/api/patients",
        headers=tech,
        json={"patient_id": "MRN-1", "first_name": "Bob", "last_name": "Roe"},
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert "MRN" in again.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"first_name": "A", "last_name": "B"}, "patient_id"),
        ({"patient_id": "", "first_name": "A", "last_name": "B"}, "patient_id"),
        ({"patient_id": "M" * 65, "first_name": "A", "last_name": "B"}, "patient_id"),
        ({"patient_id": "M\\1", "first_name": "A", "last_name": "B"}, "patient_id"),
        ({"patient_id": "M1", "first_name": "Jo^hn", "last_name": "B"}, "first_name"),
        ({"patient_id": "M1", "first_name": "A\x00", "last_name": "B"}, "first_name"),
        (
            {"patient_id": "M1", "first_name": "A", "last_name": "B", "birth_date": "2999-01-01"},
            "birth_date",
        ),
        (
            {"patient_id": "M1", "first_name": "A", "last_name": "B", "birth_date": "12/03/1960"},
            "birth_date",
        ),
        ({"patient_id": "M1", "first_name": "A", "last_name": "B", "sex": "male"}, "sex"),
        ({"patient_id": "M1", "first_name": "A", "last_name": "B", "email": "nope"}, "email"),
        ({"patient_id": "M1", "first_name": "A", "last_name": "B", "phone": "call me"}, "phone"),
        ({"patient_id": "M1", "first_name": "A", "last_name": "B", "religion": "x"}, "religion"),
    ],
)
def test_invalid_patients_are_422_problems_that_name_the_field(
    client: TestClient, as_role: Headers, body: dict[str, str], field: str
) -> None:
    response = client.post("/api/patients", headers=as_role("technician"), json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Invalid input"
    assert field in problem["detail"]
    assert any(field in err["loc"] for err in problem["errors"])
    assert all("input" not in err for err in problem["errors"])


def test_malformed_json_is_a_422_problem(client: TestClient, as_role: Headers) -> None:
    response = client.post(
        "/api/patients",
        headers={**as_role("technician"), "Content-Type": "application/json"},
        content=b'{"patient_id": "M1", "first_name": ',
    )
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM


def test_search_sort_and_pages(client: TestClient, as_role: Headers) -> None:
    tech = as_role("technician")
    _new(client, tech, "A-300", "Hélène", "Dupré")
    _new(client, tech, "A-100", "Zoe", "Adams")
    _new(client, tech, "B-200", "Marc", "Dupont")
    _new(client, tech, "C-400", "Anne", "Martin")
    viewer = as_role("viewer")
    everyone = client.get("/api/patients", headers=viewer).json()
    assert [p["last_name"] for p in everyone["items"]] == ["Adams", "Dupont", "Dupré", "Martin"]
    assert everyone["total"] == 4

    def names(search: str) -> list[str]:
        found = client.get("/api/patients", params={"search": search}, headers=viewer)
        assert found.status_code == 200
        return [p["last_name"] for p in found.json()["items"]]

    assert names("dupre") == ["Dupré"]  # accents and case do not matter
    assert names("HELENE") == ["Dupré"]
    assert names("dup") == ["Dupont", "Dupré"]
    assert names("b-200") == ["Dupont"]  # by MRN
    assert names("marc dupont") == ["Dupont"]  # every word must match
    assert names("marc martin") == []
    assert names("%") == [] and names("_") == []  # LIKE wildcards are literal
    page = client.get("/api/patients", params={"limit": 2, "offset": 2}, headers=viewer).json()
    assert [p["last_name"] for p in page["items"]] == ["Dupré", "Martin"]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 2)
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"search": "x" * 129}):
        assert client.get("/api/patients", params=bad, headers=viewer).status_code == 422


def test_history_is_newest_first(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    tech = as_role("technician")
    patient = _new(client, tech, "H-1", "Ada", "King")
    history = client.get(f"/api/patients/{patient['id']}/history", headers=tech)
    assert history.status_code == 200
    assert history.json()["studies"] == []
    assert history.json()["patient"]["id"] == patient["id"]
    _add_study(db, str(patient["id"]), "1.2.3.1", "20190301", "2024-01-01T00:00:00.000000Z")
    _add_study(db, str(patient["id"]), "1.2.3.2", "20230115", "2024-01-02T00:00:00.000000Z")
    _add_study(db, str(patient["id"]), "1.2.3.3", None, "2024-01-03T00:00:00.000000Z")
    studies = client.get(f"/api/patients/{patient['id']}/history", headers=tech).json()["studies"]
    assert [s["study_uid"] for s in studies] == ["1.2.3.2", "1.2.3.1", "1.2.3.3"]


def test_update(client: TestClient, as_role: Headers) -> None:
    tech = as_role("technician")
    patient = _new(client, tech, "U-1", "Ann", "Lee", phone="555 0100")
    other = _new(client, tech, "U-2", "Bob", "Roe")
    url = f"/api/patients/{patient['id']}"
    changed = client.patch(url, headers=tech, json={"last_name": "Leigh", "phone": None})
    assert changed.status_code == 200
    assert changed.json()["last_name"] == "Leigh" and changed.json()["phone"] is None
    assert changed.json()["first_name"] == "Ann"
    assert changed.json()["updated_at"] > str(patient["updated_at"])
    found = client.get("/api/patients", params={"search": "leigh"}, headers=tech).json()
    assert [p["id"] for p in found["items"]] == [patient["id"]]
    taken = client.patch(url, headers=tech, json={"patient_id": other["patient_id"]})
    assert taken.status_code == 409
    assert client.patch(url, headers=tech, json={}).status_code == 422
    assert client.patch(url, headers=tech, json={"last_name": None}).status_code == 422
    missing = client.patch("/api/patients/no-such-id", headers=tech, json={"last_name": "X"})
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM


def test_delete(client: TestClient, as_role: Headers, db: sqlite_utils.Database) -> None:
    admin = as_role("admin")
    lone = _new(client, as_role("technician"), "D-1", "Ann", "Lee")
    busy = _new(client, as_role("technician"), "D-2", "Bob", "Roe")
    _add_study(db, str(busy["id"]), "1.2.9", "20240101", "2024-01-01T00:00:00.000000Z")
    refused = client.delete(f"/api/patients/{busy['id']}", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["studies"] == 1
    assert client.get(f"/api/patients/{busy['id']}", headers=admin).status_code == 200
    assert client.delete(f"/api/patients/{lone['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/patients/{lone['id']}", headers=admin).status_code == 404
    assert client.delete(f"/api/patients/{lone['id']}", headers=admin).status_code == 404
    outcomes = db.execute(
        "SELECT object_id, outcome FROM audit_log WHERE action = 'patient.delete' ORDER BY id"
    ).fetchall()
    assert outcomes == [(busy["id"], "refused"), (lone["id"], "success")]


def test_every_read_and_change_is_audited(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    tech = as_role("technician")
    patient = _new(client, tech, "AU-1", "Ann", "Lee")
    pid = str(patient["id"])
    client.get(f"/api/patients/{pid}", headers=tech)
    client.get("/api/patients", headers=tech)
    client.get(f"/api/patients/{pid}/history", headers=tech)
    client.patch(f"/api/patients/{pid}", headers=tech, json={"sex": "F"})
    client.get("/api/patients/not-there", headers=tech)
    rows = db.execute(
        "SELECT action, actor, role, object_id, outcome, client, request_id FROM audit_log"
        " WHERE action LIKE 'patient.%' ORDER BY id"
    ).fetchall()
    assert [(r[0], r[4]) for r in rows] == [
        ("patient.create", "success"),
        ("patient.read", "success"),
        ("patient.list", "success"),
        ("patient.history", "success"),
        ("patient.update", "success"),
        ("patient.read", "not_found"),
    ]
    assert all(r[1] == "technician-user" and r[2] == "technician" for r in rows)
    assert all(r[5] == "testclient" and r[6] for r in rows)
    assert rows[0][3] == pid
    listed = db.execute("SELECT detail FROM audit_log WHERE action = 'patient.list'").fetchone()[0]
    assert pid in listed


def test_a_failed_audit_write_undoes_the_change(
    client: TestClient,
    as_role: Headers,
    db: sqlite_utils.Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tech = as_role("technician")

    def broken(*args: object, **kwargs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(audit_service, "record", broken)
    response = client.post(
        "/api/patients",
        headers=tech,
        json={"patient_id": "NO-AUDIT", "first_name": "A", "last_name": "B"},
    )
    assert response.status_code == 500
    assert db.execute("SELECT COUNT(*) FROM patients WHERE mrn = 'NO-AUDIT'").fetchone()[0] == 0
