"""Small parts of reports and exports: units, codes, names, diffs, hashes, back-off."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from appliance.config import Settings
from appliance.export import coding
from appliance.export.sr import person_name
from appliance.integrations.pacs import backoff_s
from appliance.reports.builder import region
from appliance.reports.diff import changes
from appliance.reports.models import (
    KeyImage,
    Measurement,
    ReportContent,
    ReportFinding,
    ReportHeader,
)
from appliance.reports.units import display, to_ucum
from appliance.reports.verify import GENESIS, version_digest


def _header() -> ReportHeader:
    return ReportHeader(
        facility="Site",
        patient_id="p",
        patient_name="Ana Lima",
        mrn="1",
        birth_date=None,
        sex=None,
        study_id="s",
        study_uid="1.2.3",
        accession_number=None,
        exam="CT head",
        modalities=["CT"],
        study_date=None,
        study_time=None,
        referring_physician=None,
    )


def test_units_become_ucum_and_print_plainly() -> None:
    assert [to_ucum(u) for u in ("HU", "mm", "cm²", "ml", "cc", "%", "", "furlong")] == [
        "[hnsf'U]",
        "mm",
        "cm2",
        "mL",
        "cm3",
        "%",
        "1",
        "1",  # not on the closed list: never passed on as free text
    ]
    assert display("[hnsf'U]") == "HU" and display("cm2") == "cm²"


def test_a_measurement_unit_must_be_on_the_closed_list() -> None:
    assert Measurement(name="long axis", value=3.0, unit="HU").unit == "[hnsf'U]"
    assert Measurement(name="volume", value=3.0, unit="cc").unit == "cm3"
    with pytest.raises(ValidationError, match="unit 'furlongs' is not recognised"):
        Measurement(name="long axis", value=3.0, unit="furlongs")


def test_codes_match_whole_words_and_fall_back() -> None:
    assert coding.finding_type("Possible small hemorrhage").value == "50960005"
    assert coding.finding_type("Possible nodules in both lungs").value == "27925004"
    assert coding.finding_type("Unremarkable") is None
    assert coding.finding_site("left lateral ventricle").value == "66720007"
    assert coding.laterality("left lateral ventricle").value == "7771000"
    assert coding.finding_site("sublingual space") is None
    assert coding.measurement_name("Long axis").value == "103339001"
    assert coding.measurement_name("ratio") == coding.GENERIC_QUANTITY
    assert coding.exam_code("CT", "HEAD").code == "24725-4"
    assert coding.exam_code("CT", "CHEST").code == "25045-6"
    assert coding.exam_code("US", None).code == "18748-4"
    assert [coding.certainty(v).meaning for v in (0.9, 0.5, 0.1)] == ["High", "Medium", "Low"]


def test_person_names() -> None:
    assert person_name("Gregory House") == "House^Gregory"
    assert person_name("radiologist") == "radiologist^"
    assert person_name("a^b\\c") == "c^a b"
    assert person_name(None) == "Unknown"


def test_boxes_map_to_pixels_of_the_key_image() -> None:
    image = KeyImage(
        instance_id="i",
        sop_instance_uid="1.2",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        series_id="s",
        series_uid="1.3",
        rows=512,
        columns=256,
    )
    # A 512 x 256 image sits in a 512 square padded by 128 columns on each side.
    found = region('{"y0": 0, "x0": 250, "y1": 500, "x1": 750}', image)
    assert found is not None
    assert (found.row0, found.col0, found.row1, found.col1) == (0.0, 0.0, 256.0, 256.0)
    pixels = region('{"space": "pixels", "row0": 10, "col0": 20, "row1": 30, "col1": 40}', image)
    assert pixels is not None and (pixels.row0, pixels.col1) == (10.0, 40.0)
    assert region('{"y0": 0, "x0": 0, "y1": 100, "x1": 200}', image) is None  # all padding
    assert region("not json", image) is None


def test_diff_names_sections_and_findings() -> None:
    finding = ReportFinding(id="f1", source="ai", text="a", confidence=0.5)
    old = ReportContent(header=_header(), findings=[finding], impression="x")
    new = old.model_copy(deep=True)
    new.impression = "y"
    new.findings[0].text = "b"
    new.findings.append(ReportFinding(id="f2", source="radiologist", text="c"))
    assert {(c.path, c.change) for c in changes(old, new)} == {
        ("impression", "changed"),
        ("findings[f1].text", "changed"),
        ("findings[f2]", "added"),
    }


def test_version_digest_covers_every_field() -> None:
    row = {
        "report_id": "r",
        "version": 1,
        "status": "draft",
        "kind": "create",
        "content": "{}",
        "author_id": "u",
        "created_at": "t",
        "prev_hash": GENESIS,
    }
    digest = version_digest(row)
    for field in row:
        assert version_digest({**row, field: "other"}) != digest, field


def test_backoff_doubles_and_is_capped() -> None:
    settings = Settings(pacs_retry_base_s=2, pacs_retry_max_s=10)
    assert [backoff_s(n, settings) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]
