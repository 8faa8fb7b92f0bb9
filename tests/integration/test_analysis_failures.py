"""A failed analysis says what happened in words people can act on (``failure``), while the
technical reason stays on the analysis row (``error``): here the engine's address is a closed
port on 127.0.0.1, a real connection refusal."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.analysis.failures import failure_kind
from appliance.config import Settings
from tests.reporting import ingest_ct
from tests.servers import free_port

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        ai_engine="openai",
        ai_endpoint=f"http://127.0.0.1:{free_port()}/v1",
        ai_max_attempts=1,
        ai_timeout_s=5,
    )


def test_an_unreachable_engine_fails_with_a_kind_people_can_act_on(
    app: FastAPI, client: TestClient, as_role: Headers
) -> None:
    ct = ingest_ct(app.state.ctx)
    rad = as_role("radiologist")
    accepted = client.post("/api/analysis", json={"study_id": ct.study_id}, headers=rad)
    assert accepted.status_code == 202, accepted.text
    analysis_id = accepted.json()["analysis_id"]
    body: dict[str, Any] = {}
    for _ in range(600):
        body = client.get(f"/api/analysis/{analysis_id}", headers=rad).json()
        if body["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert body["status"] == "failed"
    assert body["failure"] == "engine_unreachable"
    assert "EngineUnreachable" in body["error"]  # the technical detail stays on the row


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("EngineUnreachable: connection refused", "engine_unreachable"),
        ("EngineLimitError: 90 images > 85", "engine_limit"),
        ("no series of study s1 fits the selection rules", "no_series"),
        ("no earlier study of this patient with the same modality to compare", "no_prior"),
        ("interrupted by a shutdown", "interrupted"),
        ("KeyError: 'x'", "unexpected"),
        (None, "unexpected"),
    ],
)
def test_failure_kinds(reason: str | None, kind: str) -> None:
    assert failure_kind(reason) == kind
