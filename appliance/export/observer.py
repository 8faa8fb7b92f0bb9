"""Who and what observed a report's SR (PS3.16 TID 1001 observation context): the appliance
as device observer (TID 1004, the AI model as model name), the signing radiologist as person
observer (TID 1003) once signed, and the AI algorithm's identification (TID 4019)."""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
from pydicom.sr.codedict import codes

from appliance import __version__
from appliance.reports.models import ReportContent
from appliance.reports.service import StoredReport

MANUFACTURER = "RadiantAI"


@dataclass(frozen=True)
class Device:
    """The appliance as device observer: a stable UID and its site."""

    uid: str
    site: str


def person_name(name: str | None) -> str:
    """A display name as a DICOM PN: ``family^given`` (last word as family), ``name^`` alone."""
    text = " ".join((name or "").replace("^", " ").replace("\\", " ").replace("=", " ").split())
    if not text:
        return "Unknown"
    parts = text.split(" ")
    if len(parts) == 1:
        return f"{parts[0][:64]}^"  # family name only (PS3.5 6.2.1.2: not the retired form)
    return f"{parts[-1][:64]}^{' '.join(parts[:-1])[:64]}"


def observation_context(report: StoredReport, device: Device) -> hd.sr.ObservationContext:
    provenance = report.content.provenance
    model = (provenance.model_id if provenance else None) or "RadiantAI (no AI model)"
    device_context = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device.uid,
            name=f"RadiantAI appliance {__version__}",
            manufacturer_name=MANUFACTURER,
            model_name=model[:64],
            physical_location=device.site[:64] or None,
        ),
    )
    person_context = None
    if report.signed:
        person_context = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=person_name(report.signer_name),
                organization_name=device.site[:64] or None,
            ),
        )
    return hd.sr.ObservationContext(
        observer_person_context=person_context, observer_device_context=device_context
    )


def algorithm_identification(content: ReportContent) -> hd.sr.AlgorithmIdentification | None:
    provenance = content.provenance
    if provenance is None:
        return None
    parameters = [
        f"{label}={value}"
        for label, value in (
            ("engine", provenance.engine),
            ("prompt_id", provenance.prompt_id),
            ("prompt_version", provenance.prompt_version),
            ("analysis_id", provenance.analysis_id),
        )
        if value
    ]
    return hd.sr.AlgorithmIdentification(
        name=(provenance.model_id or "unknown model")[:64],
        version=(provenance.model_revision or provenance.prompt_version or "unknown")[:64],
        parameters=parameters or None,
    )
