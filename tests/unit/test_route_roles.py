"""Every route in the OpenAPI schema, every role: 401 without a token, 403 for a role that is
not allowed, and anything else for one that is.

The expected policy is written out here, independently of the code; a route added to the app
without a line here fails the first test.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from appliance.auth.access import Allow, check_guarded, iter_api_paths

PUBLIC = frozenset({"public"})
ALL = frozenset({"admin", "radiologist", "technician", "viewer"})
WRITERS = frozenset({"admin", "radiologist", "technician"})
ADMIN = frozenset({"admin"})
RADIOLOGIST = frozenset({"radiologist"})
HAND_OVER = frozenset({"admin", "technician"})

_I = "/dicom-web/studies/{study}/series/{series}/instances/{sop}"
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("POST", "/api/auth/token"): PUBLIC,
    ("GET", "/api/auth/me"): ALL,
    ("POST", "/api/auth/register"): ADMIN,
    ("POST", "/api/auth/logout"): ALL,  # ends the token it carries: a fresh one each call
    # everyone may end their own sessions; another account's (a random id here) only an admin
    ("POST", "/api/auth/users/{user_id}/revoke-sessions"): ADMIN,
    ("POST", "/api/patients"): WRITERS,
    ("GET", "/api/patients"): ALL,
    ("GET", "/api/patients/{patient_id}"): ALL,
    ("GET", "/api/patients/{patient_id}/history"): ALL,
    ("PATCH", "/api/patients/{patient_id}"): WRITERS,
    ("DELETE", "/api/patients/{patient_id}"): ADMIN,
    ("POST", "/api/studies/upload"): WRITERS,
    ("GET", "/api/studies"): ALL,
    ("GET", "/api/studies/{study_id}"): ALL,
    ("GET", "/api/studies/patient/{patient_id}"): ALL,
    ("GET", "/api/studies/{study_id}/series"): ALL,
    ("GET", "/api/series/{series_id}/instances"): ALL,
    ("GET", "/api/instances/{instance_id}/file"): ALL,
    ("GET", "/api/instances/{instance_id}/preview.png"): ALL,
    ("POST", "/api/volumes"): WRITERS,
    ("GET", "/api/volumes/{volume_id}"): ALL,
    ("GET", "/api/volumes/{volume_id}/nifti"): ALL,
    ("GET", "/api/volumes/{volume_id}/slice.png"): ALL,
    ("GET", "/api/series/{series_id}/volumes"): ALL,
    ("GET", "/api/series/{series_id}/thumbnail.png"): ALL,
    ("GET", "/api/jobs/{job_id}"): ALL,
    ("POST", "/api/jobs/{job_id}/cancel"): WRITERS,
    ("POST", "/api/analysis"): WRITERS,
    ("GET", "/api/analysis/{analysis_id}"): ALL,
    ("GET", "/api/analysis/study/{study_id}/analyses"): ALL,
    ("GET", "/api/studies/{study_id}/urgency"): ALL,
    ("POST", "/api/analysis/{analysis_id}/urgency/review"): RADIOLOGIST,
    ("GET", "/api/triage/alerts"): ALL,
    ("POST", "/api/triage/alerts/{alert_id}/acknowledge"): ALL,
    ("GET", "/api/studies/{study_id}/turnaround"): ALL,
    ("GET", "/api/triage/turnaround"): ALL,
    ("POST", "/api/reports"): WRITERS,
    ("GET", "/api/reports/{report_id}"): ALL,
    ("GET", "/api/reports/study/{study_id}"): ALL,
    ("GET", "/api/reports/{report_id}/versions"): ALL,
    ("PATCH", "/api/reports/{report_id}"): RADIOLOGIST,
    ("PATCH", "/api/reports/{report_id}/finalize"): RADIOLOGIST,
    ("POST", "/api/reports/{report_id}/review"): RADIOLOGIST,
    ("POST", "/api/reports/{report_id}/handover"): HAND_OVER,
    ("GET", "/api/reports/{report_id}/handover"): ALL,
    ("GET", "/api/export/report/{report_id}/pdf"): ALL,
    ("GET", "/api/export/report/{report_id}/json"): ALL,
    ("GET", "/api/export/report/{report_id}/dicom-sr"): ALL,
    ("GET", "/api/export/study/{study_id}/dicom-sr"): ALL,
    ("GET", "/api/export/report/{report_id}/fhir"): ALL,
    ("POST", "/api/export/report/{report_id}/send"): WRITERS,
    ("POST", "/api/system/mode"): ADMIN,
    ("GET", "/api/system/mode/online-check"): ADMIN,
    ("GET", "/api/sync/status"): ADMIN,
    ("GET", "/api/audit"): ADMIN,
    ("GET", "/api/audit/verify"): ADMIN,
    ("GET", "/api/audit/export.csv"): ADMIN,
    ("GET", "/dicom-web/studies"): ALL,
    ("GET", "/dicom-web/series"): ALL,
    ("GET", "/dicom-web/instances"): ALL,
    ("GET", "/dicom-web/studies/{study}/series"): ALL,
    ("GET", "/dicom-web/studies/{study}/instances"): ALL,
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances"): ALL,
    ("GET", "/dicom-web/studies/{study}"): ALL,
    ("GET", "/dicom-web/studies/{study}/series/{series}"): ALL,
    ("GET", _I): ALL,
    ("GET", "/dicom-web/studies/{study}/metadata"): ALL,
    ("GET", "/dicom-web/studies/{study}/series/{series}/metadata"): ALL,
    ("GET", _I + "/metadata"): ALL,
    ("GET", _I + "/frames/{frame_list}"): ALL,
    ("GET", _I + "/bulk/{tag}"): ALL,
    ("GET", _I + "/rendered"): ALL,
    ("GET", _I + "/frames/{frame}/rendered"): ALL,
    ("GET", "/dicom-web/studies/{study}/thumbnail"): ALL,
    ("GET", "/dicom-web/studies/{study}/series/{series}/thumbnail"): ALL,
    ("GET", _I + "/thumbnail"): ALL,
    ("POST", "/dicom-web/studies"): WRITERS,
    ("POST", "/dicom-web/studies/{study}"): WRITERS,
    ("GET", "/wado"): ALL,
}


def _routes(client: TestClient) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    return sorted(
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
    )


def test_every_route_has_an_expected_policy(client: TestClient) -> None:
    assert set(_routes(client)) == set(EXPECTED)


def test_role_matrix(
    client: TestClient,
    as_role: Callable[[str], dict[str, str]],
    login: Callable[[str], dict[str, str]],
) -> None:
    failures: list[str] = []
    for method, template in _routes(client):
        allowed = EXPECTED[(method, template)]
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
        kwargs = {"json": {}} if method in {"POST", "PATCH", "PUT"} else {}
        anonymous = client.request(method, path, **kwargs)
        if allowed is PUBLIC:
            if anonymous.status_code in (401, 403):
                failures.append(
                    f"{method} {template}: public route answered {anonymous.status_code}"
                )
            continue
        if anonymous.status_code != 401:
            failures.append(f"{method} {template}: no token -> {anonymous.status_code}")
        elif anonymous.headers.get("content-type") != "application/problem+json":
            failures.append(f"{method} {template}: 401 is not problem+json")
        for role in sorted(ALL):
            headers = as_role(role)
            if template == "/api/auth/logout":  # sign-out ends its token: not the shared one
                headers = login(f"{role}-user")
            status = client.request(method, path, headers=headers, **kwargs).status_code
            if role in allowed and status in (401, 403):
                failures.append(f"{method} {template}: {role} refused with {status}")
            if role not in allowed and status != 403:
                failures.append(f"{method} {template}: {role} got {status}, expected 403")
    assert failures == []


def test_an_undeclared_route_stops_the_app_from_being_built() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/api/leaky")
    def leaky() -> dict[str, str]:
        return {}

    @router.get("/api/guarded", dependencies=[Depends(Allow())])
    def guarded() -> dict[str, str]:
        return {}

    app.include_router(router)
    with pytest.raises(RuntimeError, match="/api/leaky"):
        check_guarded(app)


def test_the_guard_walk_sees_every_published_route(app: FastAPI) -> None:
    walked = {
        (method, path)
        for path, route in iter_api_paths(app.router.routes)
        if route.include_in_schema
        for method in route.methods or ()
    }
    assert walked == set(EXPECTED)
