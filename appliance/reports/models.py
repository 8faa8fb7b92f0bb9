"""Report schemas: the content of a report and the requests and answers of the report API.

The sections follow the ACR Practice Parameter for Communication of Diagnostic Imaging Findings:
demographics (header), clinical indication, technique, comparison, findings, impression,
recommendations, limitations; plus the decision-support disclaimer, addenda and AI provenance.
A report's content is stored whole in each immutable version (``report_versions.content``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ai.units import UCUM_CODES, ucum_code

ReportStatus = Literal["draft", "final", "amended"]
VersionKind = Literal["create", "edit", "finalize", "addendum"]
FindingSource = Literal["ai", "radiologist"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
TEXT_MAX = 20_000


def _text(value: str) -> str:
    """Free text: newlines and tabs allowed, other control characters refused."""
    value = value.strip()
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if len(value) > TEXT_MAX:
        raise ValueError(f"must be at most {TEXT_MAX} characters")
    return value


def _line(value: str) -> str:
    value = _text(value)
    if "\n" in value or len(value) > 256:
        raise ValueError("must be one line of at most 256 characters")
    return value


Text = Annotated[str, AfterValidator(_text)]
Line = Annotated[str, AfterValidator(_line)]


class ReportHeader(BaseModel):
    """Demographics and exam identification, copied from the index when the draft is made."""

    facility: str = Field(description="Site name (RADIANT_SITE_NAME)")
    patient_id: str = Field(description="Our patient id")
    patient_name: str | None = Field(description="Given name then family name")
    first_name: str | None = None
    last_name: str | None = None
    mrn: str = Field(description="Medical record number (DICOM PatientID)")
    birth_date: str | None = Field(description="ISO 8601 date")
    sex: Literal["M", "F", "O"] | None
    study_id: str = Field(description="Our study id")
    study_uid: str = Field(description="DICOM StudyInstanceUID")
    accession_number: str | None
    exam: str | None = Field(description="Exam name: the study description, else modality")
    modalities: list[str]
    study_date: str | None = Field(description="DICOM DA, YYYYMMDD")
    study_time: str | None = Field(description="DICOM TM")
    referring_physician: str | None


class TechniqueFacts(BaseModel):
    """What the DICOM headers of the study's instances say about how it was acquired."""

    modalities: list[str] = []
    body_parts: list[str] = []
    series_count: int = 0
    instance_count: int = 0
    series: list[str] = Field(default=[], description="Series descriptions")
    slice_thickness_mm: list[float] = []
    kvp: list[float] = Field(default=[], description="CT: peak kilovoltage (0018,0060)")
    exposure_mas: list[float] = Field(
        default=[], description="CT: tube current-time product, mAs (0018,1152) or derived"
    )
    field_strength_t: list[float] = Field(default=[], description="MR: (0018,0087), tesla")
    sequences: list[str] = Field(default=[], description="MR: sequence names / scanning sequences")
    contrast_agent: str | None = Field(default=None, description="(0018,0010) when present")
    manufacturers: list[str] = []


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Line
    value: float = Field(allow_inf_nan=False)
    unit: Line = Field(
        description="UCUM unit from the closed list (mm, cm, m, mm2, cm2, mm3, cm3, mL, L, "
        "[hnsf'U], %, deg, s, ms, 1); common spellings (HU, ml, cc) are accepted and stored "
        "as their code"
    )

    @field_validator("unit", mode="before")
    @classmethod
    def _closed_unit_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        code = ucum_code(value)
        if code is None:
            raise ValueError(
                f"unit {value[:40]!r} is not recognised; use one of: "
                + ", ".join(sorted(UCUM_CODES))
            )
        return code


class KeyImage(BaseModel):
    """The image a finding points at (a DICOM instance of the study)."""

    instance_id: str
    sop_instance_uid: str
    sop_class_uid: str
    series_id: str
    series_uid: str
    instance_number: int | None = None
    slice_index: int | None = Field(default=None, description="0-based index in the series")
    frame: int = Field(default=0, description="0-based frame")
    rows: int | None = None
    columns: int | None = None


class ImageRegion(BaseModel):
    """A rectangle on the key image in pixel edge coordinates (0..rows, 0..columns)."""

    row0: float
    col0: float
    row1: float
    col1: float


class SafetyFlag(BaseModel):
    """One stored flag of the safety layer (see :mod:`appliance.analysis.verdict`)."""

    reason: str = Field(
        description="A hedge flag reason (e.g. unhedged_statement), reworded, "
        "unit_not_recognised or confidence_out_of_range"
    )
    phrase: str | None = Field(default=None, description="The model's words it concerns")
    replacement: str | None = Field(default=None, description="What replaced them, if anything")
    detail: str | None = None


class ReportFinding(BaseModel):
    id: str
    source: FindingSource
    analysis_finding_id: str | None = None
    location: str | None = None
    text: str
    impression: str | None = None
    confidence: float | None = Field(
        default=None, ge=0, le=1, description="AI confidence 0..1 (None for a person's finding)"
    )
    measurements: list[Measurement] = []
    key_image: KeyImage | None = None
    region: ImageRegion | None = None
    review_state: Literal["pending", "accepted", "edited", "rejected"] = "pending"
    flags: list[SafetyFlag] = Field(
        default=[], description="The safety layer's flags; a flagged AI finding needs an "
        "explicit decision (accept, edit or reject) before signing"
    )

    @property
    def needs_decision(self) -> bool:
        """An AI finding with any flag of the safety layer (a bare diagnosis it reworded
        included) that the radiologist has not yet accepted, edited or rejected."""
        return self.source == "ai" and self.review_state == "pending" and bool(self.flags)


class RejectedFinding(BaseModel):
    """A finding a radiologist rejected: out of the report, kept visible in its history."""

    finding: ReportFinding
    rejected_by: str | None
    rejected_at: str


class ComparisonStudy(BaseModel):
    study_id: str
    study_uid: str
    study_date: str | None = None
    description: str | None = None


class Addendum(BaseModel):
    version: int
    text: str
    author_id: str | None
    author_name: str | None
    created_at: str


class Provenance(BaseModel):
    """Where the AI content came from (IHE AI Results: algorithm identity and inputs)."""

    analysis_id: str
    engine: str | None = None
    model_id: str | None = None
    model_revision: str | None = None
    prompt_id: str | None = None
    prompt_version: str | None = None
    images_sha256: str | None = None
    analysis_completed_at: str | None = None
    partial_instances: int | None = Field(
        default=None,
        description="Set when the analysis was forced while the study was still arriving: "
        "the number of images it could see",
    )


class ReportContent(BaseModel):
    """One version of a report, whole."""

    header: ReportHeader
    language: Literal["en", "fr"] = Field(
        default="en",
        description="Language of the text the appliance generated (technique, comparison, "
        "limitations, disclaimer, export titles); the model's text is never translated",
    )
    clinical_indication: str | None = None
    technique: str | None = None
    technique_facts: TechniqueFacts = TechniqueFacts()
    comparison: str | None = None
    comparison_studies: list[ComparisonStudy] = []
    findings: list[ReportFinding] = []
    impression: str | None = None
    impression_flags: list[SafetyFlag] = Field(
        default=[], description="Flags of the AI impression (e.g. could not be hedged)"
    )
    impression_review: Literal["pending", "accepted", "edited"] | None = Field(
        default=None,
        description="pending while a flagged AI impression awaits the radiologist's decision",
    )
    recommendations: str | None = None
    limitations: str | None = None
    disclaimer: str | None = None
    addenda: list[Addendum] = []
    rejected_findings: list[RejectedFinding] = []
    provenance: Provenance | None = None


# -- requests -------------------------------------------------------------------------------


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_id: str
    analysis_id: str | None = Field(
        default=None, description="Build the draft from this analysis; omitted: an empty draft"
    )
    include_ai_disclaimer: bool = Field(
        default=True,
        description="Print the decision-support disclaimer; AI content always carries it",
    )
    language: Literal["en", "fr"] | None = Field(
        default=None,
        description="Language of the generated report text; omitted: the site's report "
        "language (RADIANT_REPORT_LANGUAGE)",
    )


class FindingEdit(BaseModel):
    """A finding as the editor keeps it. With the ``id`` of an existing finding its source,
    confidence, key image and region are kept; without one it is a radiologist's finding."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    location: Line | None = None
    text: Text = Field(min_length=1)
    impression: Text | None = None
    measurements: list[Measurement] = []


class ReportUpdate(BaseModel):
    """Save a new version. A draft takes section edits; a signed report only an ``addendum``."""

    model_config = ConfigDict(extra="forbid")

    clinical_indication: Text | None = None
    technique: Text | None = None
    comparison: Text | None = None
    findings: list[FindingEdit] | None = Field(default=None, max_length=200)
    impression: Text | None = None
    recommendations: Text | None = None
    limitations: Text | None = None
    language: Literal["en", "fr"] | None = Field(
        default=None,
        description="Write the generated text of the draft (technique, comparison, "
        "limitations, disclaimer) again in this language; edited text is kept",
    )
    addendum: Text | None = None
    expected_version: int | None = Field(
        default=None, description="Refuse (409) unless this is the current version"
    )

    @model_validator(mode="after")
    def _something(self) -> ReportUpdate:
        if not (self.model_fields_set - {"expected_version"}):
            raise ValueError("give at least one section to change, or an addendum")
        if "language" in self.model_fields_set and self.language is None:
            raise ValueError("language must be en or fr")
        if "findings" in self.model_fields_set and self.findings is None:
            raise ValueError("findings must be a list (an empty list removes every finding)")
        if self.addendum is not None and not self.addendum:
            raise ValueError("addendum must not be empty")
        return self

    def section_fields(self) -> set[str]:
        return self.model_fields_set - {"expected_version", "addendum"}


class FinalizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ai_findings_reviewed: bool = Field(
        description="The radiologist confirms every AI finding was reviewed (must be true)"
    )
    expected_version: int | None = None


class ReviewRequest(BaseModel):
    """A radiologist's decision on one AI item of a draft."""

    model_config = ConfigDict(extra="forbid")

    item: str = Field(
        min_length=1,
        max_length=64,
        description="A finding id (f1, f2, ...) or 'impression' (a flagged impression)",
    )
    decision: Literal["accepted", "rejected"] = Field(
        description="accepted keeps the item as it stands; rejected moves a finding out of the "
        "report into its history (an impression is kept or edited, not rejected)"
    )


# -- answers --------------------------------------------------------------------------------


class VerificationOut(BaseModel):
    """See :mod:`appliance.reports.verification`."""

    state: Literal["UNVERIFIED", "VERIFIED", "AMENDED"]
    verifier_name: str | None = Field(description="The radiologist who signed; null on a draft")
    verified_at: str | None = Field(description="When it was signed (ISO 8601 UTC)")
    notice: str | None = Field(
        description="The decision-support sentence for this state: the disclaimer on a draft, "
        "who verified it and when once signed; null without AI content"
    )


class ReportOut(BaseModel):
    id: str
    study_id: str
    analysis_id: str | None
    status: ReportStatus
    current_version: int
    verification_flag: Literal["UNVERIFIED", "VERIFIED"]
    verification: VerificationOut
    created_by: str | None
    signed_by: str | None
    signer_name: str | None
    signed_at: str | None
    created_at: str
    updated_at: str
    hash: str = Field(description="SHA-256 of the current version (chain head)")
    content: ReportContent


class ReportSummary(BaseModel):
    id: str
    study_id: str
    analysis_id: str | None
    status: ReportStatus
    current_version: int
    signed_at: str | None
    created_at: str
    updated_at: str
