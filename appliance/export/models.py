"""Export schemas: the JSON export of a report (published in OpenAPI) and the PACS send result.

``ReportExport`` is the documented, versioned JSON form of a report: every section, finding and
measurement of the current version, the version history with its hash chain, the signature and
the AI provenance (engine, model, prompt id and version, analysis id).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from appliance.reports.models import Provenance, ReportContent, ReportStatus, VerificationOut

FORMAT = "radiantai.report"
FORMAT_VERSION = 1


class ExportVersion(BaseModel):
    version: int
    status: ReportStatus
    kind: str
    author_id: str | None
    author_name: str | None
    created_at: str = Field(description="ISO 8601 UTC")
    prev_hash: str = Field(description="SHA-256 of the previous version (64 zeros for v1)")
    hash: str = Field(description="SHA-256 of this version's canonical JSON")


class ExportSignature(BaseModel):
    signed: bool
    signer_id: str | None
    signer_name: str | None
    signed_at: str | None


class ReportExport(BaseModel):
    """A report as JSON (format ``radiantai.report``, version 1)."""

    format: Literal["radiantai.report"] = "radiantai.report"
    format_version: Literal[1] = 1
    exported_at: str
    report_id: str
    study_id: str
    status: ReportStatus
    verification_flag: Literal["UNVERIFIED", "VERIFIED"] = Field(
        description="UNVERIFIED until a radiologist signs (DICOM Verification Flag semantics)"
    )
    verification: VerificationOut = Field(
        description="UNVERIFIED (draft), VERIFIED (signed: by whom, when) or AMENDED"
    )
    current_version: int
    hash: str = Field(description="Hash of the current version")
    chain_ok: bool = Field(description="The version chain checked intact at export time")
    signature: ExportSignature
    provenance: Provenance | None = Field(
        description="AI provenance: engine, model, prompt id and version, analysis id"
    )
    content: ReportContent = Field(description="Every section of the current version")
    versions: list[ExportVersion] = Field(description="All versions, oldest first")


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    peer: str = Field(min_length=1, max_length=16, description="AE title in RADIANT_DICOM_PEERS")


class SendResult(BaseModel):
    queue_id: int
    status: Literal["sent", "queued", "failed"]
    peer: str
    version: int
    attempts: int
    last_error: str | None
    sr_sop_instance_uid: str
    pdf_sop_instance_uid: str
