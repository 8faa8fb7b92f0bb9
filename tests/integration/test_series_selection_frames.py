"""Series selection counts slices and frames, not files: an enhanced multi-frame MR of
tests/data (one instance, 40 frames) is selectable, and a study with nothing to analyse is
refused with each series' reason in plain words."""

from __future__ import annotations

import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.analysis.failures import failure_kind
from appliance.analysis.service import choose_series
from appliance.audit.models import Actor
from appliance.jobs.models import JobFailed
from tests.dicom_files import DATA

pytestmark = pytest.mark.integration
ACTOR = Actor.system("test")


def _ingest(app: FastAPI, relative: str) -> None:
    result = app.state.ctx.ingestor.ingest((DATA / relative).read_bytes(), source="t", actor=ACTOR)
    assert result.outcome == "stored", result


def test_an_enhanced_multiframe_mr_is_selectable(
    app: FastAPI, client: TestClient, db: sqlite_utils.Database
) -> None:
    _ingest(app, "mr_enhanced_multiframe/philips_ingenia_elition/1901_WIP_3DpCASL_real.dcm")
    (study_id,) = db.execute("SELECT id FROM studies").fetchone()
    (series_id, frames) = db.execute(
        "SELECT s.id, i.number_of_frames FROM series s JOIN instances i ON i.series_id = s.id"
    ).fetchone()
    assert frames == 40
    assert choose_series(db, study_id) == series_id  # was: "1 instances < 10"


def test_a_refusal_names_each_series_reason_in_plain_words(
    app: FastAPI, client: TestClient, db: sqlite_utils.Database
) -> None:
    _ingest(app, "mr_enhanced_multiframe/siemens_xa10/6_1.dcm")  # 6 frames: too few
    (study_id,) = db.execute("SELECT id FROM studies").fetchone()
    with pytest.raises(JobFailed) as refused:
        choose_series(db, study_id)
    reason = str(refused.value)
    assert reason.startswith("No series of this study can be analysed")
    assert "it has 6 images; at least 10 are needed" in reason
    assert "instances <" not in reason
    assert failure_kind(reason) == "no_series"
