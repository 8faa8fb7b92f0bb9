"""Study Root matching over the index (PS3.4 C.2.2.2), without the network: universal, single
value, wildcard, list of UIDs and range matching, and which keys come back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlite_utils
from pydicom.dataset import Dataset

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import prepare
from appliance.dicom.query import (
    IDENTIFIER_MISMATCH,
    UNABLE_TO_PROCESS,
    Level,
    QueryError,
    find,
    parse_identifier,
)
from appliance.dicom.retrieval import instances, retrieve_query

DATA = Path(__file__).resolve().parents[1] / "data"
PCIR = DATA / "dicomdir_pcir_3patients_prior_current"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> sqlite_utils.Database:
    ctx = prepare(Settings(data_dir=tmp_path_factory.mktemp("q") / "data"))
    for path in sorted(p for p in PCIR.rglob("*") if p.is_file() and p.name[0].isdigit()):
        ctx.ingestor.ingest(path.read_bytes(), source="usb", actor=Actor.system("test"))
    return ctx.pool.get()


@pytest.fixture(scope="module")
def files() -> list[Dataset]:
    return [
        pydicom.dcmread(p, stop_before_pixels=True)
        for p in sorted(PCIR.rglob("*"))
        if p.is_file() and p.name[0].isdigit()
    ]


def _q(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _find(db: sqlite_utils.Database, **keys: Any) -> list[Dataset]:
    return list(find(db, parse_identifier(_q(**keys)), retrieve_ae="RADIANT"))


def test_levels_and_identifier_errors() -> None:
    assert parse_identifier(_q(QueryRetrieveLevel="series")).level is Level.SERIES
    for keys, status in (
        ({}, IDENTIFIER_MISMATCH),
        ({"QueryRetrieveLevel": "PATIENT"}, IDENTIFIER_MISMATCH),
        ({"QueryRetrieveLevel": "STUDY", "StudyDate": "2004"}, UNABLE_TO_PROCESS),
        ({"QueryRetrieveLevel": "STUDY", "StudyTime": "25x"}, UNABLE_TO_PROCESS),
    ):
        with pytest.raises(QueryError) as caught:
            parse_identifier(_q(**keys))
        assert caught.value.status == status and len(caught.value.comment) <= 64
    with pytest.raises(QueryError, match="needs SeriesInstanceUID"):
        retrieve_query(_q(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2.3"))


def test_study_matching(db: sqlite_utils.Database, files: list[Dataset]) -> None:
    studies = {f.StudyInstanceUID for f in files}
    assert {d.StudyInstanceUID for d in _find(db, QueryRetrieveLevel="STUDY")} == studies
    assert len(_find(db, QueryRetrieveLevel="STUDY", PatientID="*")) == len(studies)
    patient = str(files[0].PatientID)
    mine = {f.StudyInstanceUID for f in files if str(f.PatientID) == patient}
    found = _find(db, QueryRetrieveLevel="STUDY", PatientID=patient, PatientName="")
    assert {d.StudyInstanceUID for d in found} == mine
    family = str(files[0].PatientName).split("^")[0]
    by_name = _find(db, QueryRetrieveLevel="STUDY", PatientName=family[:2].swapcase() + "*")
    assert mine <= {d.StudyInstanceUID for d in by_name}  # PN: case-insensitive wildcard
    assert _find(db, QueryRetrieveLevel="STUDY", PatientName="[" + family) == []  # no GLOB set
    dates = sorted({str(f.StudyDate) for f in files if f.get("StudyDate")})
    first, last = dates[0], dates[-1]
    assert len(_find(db, QueryRetrieveLevel="STUDY", StudyDate=f"{first}-{last}")) == len(studies)
    only_first = {f.StudyInstanceUID for f in files if str(f.get("StudyDate", "")) == first}
    assert {
        d.StudyInstanceUID for d in _find(db, QueryRetrieveLevel="STUDY", StudyDate=f"-{first}")
    } == only_first
    assert {
        d.StudyInstanceUID for d in _find(db, QueryRetrieveLevel="STUDY", StudyDate=first)
    } == only_first
    two = sorted(studies)[:2]
    assert {
        d.StudyInstanceUID for d in _find(db, QueryRetrieveLevel="STUDY", StudyInstanceUID=two)
    } == set(two)
    with_ct = {f.StudyInstanceUID for f in files if f.Modality == "CT"}
    assert {
        d.StudyInstanceUID
        for d in _find(db, QueryRetrieveLevel="STUDY", ModalitiesInStudy=["CT", "XX"])
    } == with_ct
    assert {
        d.StudyInstanceUID for d in _find(db, QueryRetrieveLevel="STUDY", ModalitiesInStudy="?T")
    } == with_ct


def test_keys_returned(db: sqlite_utils.Database, files: list[Dataset]) -> None:
    (first, *_) = _find(
        db,
        QueryRetrieveLevel="SERIES",
        SeriesInstanceUID=files[0].SeriesInstanceUID,
        Modality="",
        SOPInstanceUID="",
        StudyID="",
        RetrieveAETitle="",
        InstanceAvailability="",
    )
    assert first.QueryRetrieveLevel == "SERIES"
    assert first.StudyInstanceUID == files[0].StudyInstanceUID  # unique keys above the level
    assert first.Modality == files[0].Modality
    assert not first.SOPInstanceUID  # a key below the level: not matched, returned empty
    assert not first.StudyID  # a key the index does not hold: returned empty (zero length)
    assert "SOPInstanceUID" in first and "StudyID" in first
    assert first.RetrieveAETitle == "RADIANT" and first.InstanceAvailability == "ONLINE"
    assert "PatientName" not in first  # only what was asked for


def test_image_level_and_retrieve(db: sqlite_utils.Database, files: list[Dataset]) -> None:
    series = files[0].SeriesInstanceUID
    expected = {f.SOPInstanceUID for f in files if f.SeriesInstanceUID == series}
    found = _find(
        db,
        QueryRetrieveLevel="IMAGE",
        SeriesInstanceUID=series,
        SOPInstanceUID="",
        InstanceNumber="",
    )
    assert {d.SOPInstanceUID for d in found} == expected
    query = retrieve_query(_q(QueryRetrieveLevel="SERIES", SeriesInstanceUID=series))
    assert {i.sop_instance_uid for i in instances(db, query)} == expected
    number = int(files[0].InstanceNumber)
    assert [
        d.InstanceNumber
        for d in _find(
            db, QueryRetrieveLevel="IMAGE", SeriesInstanceUID=series, InstanceNumber=number
        )
    ] == [number]
