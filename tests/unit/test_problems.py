"""Errors are RFC 9457 problem documents; unexpected ones leak no stack trace and no PHI."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from appliance.auth.access import Public
from appliance.db.migrate import available

PROBLEM = "application/problem+json"


def _is_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    assert body["request_id"] == response.headers["x-request-id"]  # type: ignore[attr-defined]
    return body


def test_unknown_api_path_is_a_404_problem(client: TestClient) -> None:
    body = _is_problem(client.get("/api/no/such/thing"), 404)
    assert body["instance"] == "/api/no/such/thing"


def test_missing_object_is_a_404_problem(
    client: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    body = _is_problem(client.get("/api/patients/nope", headers=as_role("viewer")), 404)
    assert "not found" in str(body["detail"])


def test_validation_error_is_a_422_problem(
    client: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    response = client.get("/api/patients", params={"limit": "many"}, headers=as_role("viewer"))
    body = _is_problem(response, 422)
    assert str(body["detail"]).startswith("query.limit:")
    assert isinstance(body["errors"], list)


def test_unexpected_error_is_a_500_problem_without_trace_or_phi(
    app: FastAPI, capfd: pytest.CaptureFixture[str]
) -> None:
    @app.get("/api/explode", dependencies=[Depends(Public())])
    def explode() -> None:
        raise RuntimeError("patient Jane Roe MRN 998877 broke the parser")

    # ahead of the app's catch-all for unknown /api paths
    app.router.routes.insert(0, app.router.routes.pop())

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/explode", headers={"X-Request-ID": "req-12345678"})
    body = _is_problem(response, 500)
    assert body["request_id"] == "req-12345678"
    text = response.text
    for leak in ("Jane", "998877", "Traceback", "RuntimeError", "broke the parser"):
        assert leak not in text
    logged = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    errors = [entry for entry in logged if entry.get("event") == "unhandled_error"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "req-12345678"
    assert errors[0]["level"] == "error" and "RuntimeError" in errors[0]["exception"]


def test_request_ids_are_generated_and_unsafe_ones_replaced(client: TestClient) -> None:
    first = client.get("/healthz")
    assert len(first.headers["x-request-id"]) == 32
    odd = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert odd.headers["x-request-id"] != "bad id\nwith newline"


def test_access_log_has_no_query_string(
    client: TestClient,
    as_role: Callable[[str], dict[str, str]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    client.get("/api/patients", params={"search": "Roe Jane"}, headers=as_role("viewer"))
    err = capfd.readouterr().err
    assert '"path": "/api/patients"' in err
    assert "Roe" not in err and "Jane" not in err


def test_health(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["mode"] == "offline"
    assert body["version"]
    assert body["database"] == {
        "status": "ok",
        "schema_version": len(available()),
        "journal_mode": "wal",
        "detail": None,
    }
