"""One model of a report's verification, read by every surface (screen, PDF, SR, FHIR, JSON).

``UNVERIFIED``: a draft; its AI content has not been reviewed by a radiologist. ``VERIFIED``:
signed by a named radiologist at a time, who confirmed every AI suggestion was reviewed.
``AMENDED``: verified, then changed by addenda. The DICOM Verification Flag (PS3.3 C.17.2) has
only UNVERIFIED / VERIFIED: an amended report stays VERIFIED there. FHIR R4
DiagnosticReport.status: ``preliminary`` / ``final`` / ``amended``.

The stored decision-support disclaimer says "UNVERIFIED until signed"; once signed that
sentence is no longer true, so surfaces print :meth:`Verification.notice` instead of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from appliance.reports import language

VerificationState = Literal["UNVERIFIED", "VERIFIED", "AMENDED"]
DicomFlag = Literal["UNVERIFIED", "VERIFIED"]

_STATES: dict[str, VerificationState] = {
    "draft": "UNVERIFIED",
    "final": "VERIFIED",
    "amended": "AMENDED",
}
_FHIR = {"UNVERIFIED": "preliminary", "VERIFIED": "final", "AMENDED": "amended"}


@dataclass(frozen=True)
class Verification:
    """Where a report stands: its state, and for a signed one who signed it and when."""

    state: VerificationState
    verifier_name: str | None = None
    verified_at: str | None = None

    @classmethod
    def of(cls, status: str, signer_name: str | None, signed_at: str | None) -> Verification:
        """From a report's status and signature columns."""
        state = _STATES.get(status)
        if state is None:
            raise ValueError(f"unknown report status {status!r}")
        if state == "UNVERIFIED":
            return cls(state)
        return cls(state, signer_name or "unknown", signed_at)

    @property
    def signed(self) -> bool:
        return self.state != "UNVERIFIED"

    @property
    def dicom_flag(self) -> DicomFlag:
        """Verification Flag (0040,A493): VERIFIED once signed, amended or not."""
        return "VERIFIED" if self.signed else "UNVERIFIED"

    @property
    def fhir_status(self) -> str:
        """FHIR R4 DiagnosticReport.status."""
        return _FHIR[self.state]

    def notice(
        self, disclaimer: str | None, when: str | None = None, lang: str = "en"
    ) -> str | None:
        """The decision-support sentence for this state: the stored disclaimer on a draft;
        once signed, who verified it and when (``when`` formats ``verified_at``), and that
        the AI suggestions were reviewed, in report language ``lang``. None when the report
        has no disclaimer (no AI)."""
        if not self.signed:
            return disclaimer
        if disclaimer is None:
            return None
        moment = when or self.verified_at or "-"
        text = language.text(lang, "verification.signed", name=self.verifier_name, moment=moment)
        if self.state == "AMENDED":
            text += " " + language.text(lang, "verification.amended")
        return text
