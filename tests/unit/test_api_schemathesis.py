"""Schemathesis over the app's own OpenAPI document, in process: no input may answer a 5xx or a
response that breaks the declared schema (issue 16). Bounded examples per operation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance

from appliance.auth.models import Role
from appliance.config import Settings
from tests.conftest import PASSWORD
from tests.reporting import ingest_ct

EXAMPLES_PER_OPERATION = 12
# Every check but one: "schema-valid data is accepted" cannot hold where a domain rule has no JSON
# Schema form (a birth date not in the future, a finding's confidence against its text, ...).
# The reverse (schema-invalid data is refused), status codes, content types, response schemas
# and "no 5xx" are all checked.
EXCLUDED = [positive_data_acceptance]

# STOW-RS bodies (PS3.18 multipart/related): schemathesis has no serializer for it, so it sends
# raw bytes: arbitrary ones, and a well-framed part holding arbitrary "DICOM" bytes.
_BOUNDARY = b"radiantfuzz"
schemathesis.openapi.media_type(
    "multipart/related",
    st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=2048).map(
            lambda part: b"--" + _BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n"
            + part + b"\r\n--" + _BOUNDARY + b"--\r\n"
        ),
    ),
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A box with an AI engine configured (on a closed port): an unconfigured one rightly answers
    503 to an analysis request, which is a state of the box, not an input's fault."""
    return Settings(
        data_dir=tmp_path / "data", ai_engine="openai", ai_endpoint="http://127.0.0.1:9/v1"
    )


@pytest.fixture
def admin_headers(app: FastAPI, make_user: Callable[..., str]) -> dict[str, str]:
    """A bearer token of an administrator, signed in without starting the app's lifespan."""
    name = make_user(Role.ADMIN)
    response = TestClient(app).post(
        "/api/auth/token", data={"username": name, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_no_server_error_and_schema_conformance(
    app: FastAPI, admin_headers: dict[str, str]
) -> None:
    """Every operation, bounded examples each, every schemathesis check (status codes, content
    types, response schemas, ...). Schemathesis runs the app's lifespan once, stopped below."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    failures: list[str] = []
    try:
        for operation in operations:

            @given(case=operation.as_strategy())
            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                headers = {} if case.path == "/api/auth/token" else admin_headers
                if case.path == "/api/auth/logout":  # ends its token: a fresh one each time
                    headers = _fresh_admin_token(app)
                case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

            try:
                check()
            except (Exception, BaseExceptionGroup) as exc:  # all operations, all failures
                failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
        # Every operation ran signed in: no case ended the token the others use.
        assert TestClient(app).get("/api/auth/me", headers=admin_headers).status_code == 200
    finally:
        shutdown_lifespans()
    assert not failures, "\n\n".join(failures)


def _fresh_admin_token(app: FastAPI) -> dict[str, str]:
    (name,) = app.state.ctx.pool.get().execute(
        "SELECT username FROM users WHERE role = 'admin' LIMIT 1").fetchone()
    response = TestClient(app).post(
        "/api/auth/token", data={"username": name, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_offset_beyond_sqlite_integer_is_refused(
    client: TestClient, as_role: Callable[[Role | str], dict[str, str]]
) -> None:
    headers = as_role("admin")
    for path in ("/api/patients", "/api/studies", "/api/audit"):
        for query in ("offset=9223372036854775808", "limit=9223372036854775808"):
            response = client.get(f"{path}?{query}", headers=headers)
            assert response.status_code == 422, (path, query, response.text)
            assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/patients"),
        ("DELETE", "/api/studies"),
        ("PATCH", "/api/audit"),
        ("POST", "/api/patients/1/history"),
        ("PUT", "/healthz"),
    ],
)
def test_undeclared_method_answers_405_problem(
    client: TestClient, as_role: Callable[[Role | str], dict[str, str]], method: str, path: str
) -> None:
    response = client.request(method, path, headers=as_role("admin"))
    assert response.status_code == 405, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "allow" in {k.lower() for k in response.headers}


def test_report_patch_with_null_findings_is_422(
    app: FastAPI, client: TestClient, as_role: Callable[[Role | str], dict[str, str]]
) -> None:
    rad = as_role("radiologist")
    ct = ingest_ct(app.state.ctx)
    draft = client.post("/api/reports", json={"study_id": ct.study_id}, headers=rad)
    assert draft.status_code == 201, draft.text
    report_id = draft.json()["id"]
    response = client.patch(f"/api/reports/{report_id}", json={"findings": None}, headers=rad)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "findings" in response.json()["detail"]
