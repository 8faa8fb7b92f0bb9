"""The prior a study is read beside (studies.comparison_prior) and the diagnostic viewer link
that opens both (ui.ohif.study_url), on the PCIR prior/current set ingested through the one
ingest path into a real SQLite index."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydicom
import pytest
from pydicom.uid import generate_uid

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.studies import service as studies
from tests.dicom_files import instance_files
from ui import ohif

ACTOR = Actor.system("test")
FILES = instance_files("dicomdir_pcir_3patients_prior_current")
# patient 77654033: CT of 1995-09-03 (prior), CR of 2001-01-01 (current)
CT_1995 = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1"
CR_2001 = "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.1"
# patient 98890234: CT of 2001-01-01, then three MR studies of 2003-05-05
CT_2001 = "1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.1"
MR_2003 = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.1"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    context = prepare(Settings(data_dir=tmp_path / "data"))
    for path in FILES:
        assert context.ingestor.ingest(path.read_bytes(), source="test", actor=ACTOR).instance_id
    yield context
    context.pool.close_all()


def _id(ctx: AppContext, study_uid: str) -> str:
    row = ctx.pool.get().execute("SELECT id FROM studies WHERE study_uid = ?", (study_uid,))
    return str(row.fetchone()[0])


def _new_study(ctx: AppContext, like: str, **changes: Any) -> str:
    """A new study of the patient of ``like`` (one of its files, with ``changes``)."""
    source = next(p for p in FILES if pydicom.dcmread(p).StudyInstanceUID == like)
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert ctx.ingestor.ingest(out.getvalue(), source="test", actor=ACTOR).instance_id
    return str(ds.StudyInstanceUID)


def test_the_prior_is_the_patients_latest_earlier_study(ctx: AppContext) -> None:
    db = ctx.pool.get()
    assert studies.comparison_prior(db, _id(ctx, CR_2001)) == CT_1995
    assert studies.comparison_prior(db, _id(ctx, CT_1995)) is None  # nothing earlier
    # no earlier MR: the patient's earlier CT; a study of the same day is not a prior
    assert studies.comparison_prior(db, _id(ctx, MR_2003)) == CT_2001
    assert studies.comparison_prior(db, _id(ctx, CT_2001)) is None
    assert studies.comparison_prior(db, "no-such-study") is None


def test_a_prior_of_the_same_modality_is_preferred(ctx: AppContext) -> None:
    db = ctx.pool.get()
    # a CT of 2005: the CR of 2001 is more recent, the CT of 1995 is the one to compare with
    ct_2005 = _new_study(ctx, CT_1995, StudyDate="20050101")
    assert studies.comparison_prior(db, _id(ctx, ct_2005)) == CT_1995
    # another patient's earlier study never is
    other = _new_study(ctx, CT_1995, StudyDate="19900101", PatientID="SOMEONE-ELSE")
    assert studies.comparison_prior(db, _id(ctx, ct_2005)) == CT_1995
    assert studies.comparison_prior(db, _id(ctx, other)) is None
    # without a Study Date nothing is earlier or later
    undated = _new_study(ctx, CT_1995, StudyDate="")
    assert studies.comparison_prior(db, _id(ctx, undated)) is None


def test_the_viewer_link_opens_the_prior_beside_the_study() -> None:
    alone = urlsplit(ohif.study_url(CR_2001))
    assert alone.path == "/ohif/viewer"
    assert parse_qs(alone.query) == {"StudyInstanceUIDs": [CR_2001]}
    both = urlsplit(ohif.study_url(CR_2001, CT_1995))
    assert both.path == "/ohif/viewer"
    assert parse_qs(both.query) == {
        "StudyInstanceUIDs": [f"{CR_2001},{CT_1995}"],  # the current first: left
        "hangingprotocolId": ["@ohif/hpCompare"],
    }
    assert ohif.study_url(CR_2001, CR_2001) == ohif.study_url(CR_2001)
