"""A report as a FHIR R4 (4.0.1) Bundle of type ``collection``.

Entries: DiagnosticReport (status draft -> ``preliminary``, final -> ``final``, amended ->
``amended``; code LOINC for the exam; subject; issued; resultsInterpreter once signed;
imagingStudy; conclusion = impression; presentedForm = the PDF with its size and SHA-1 hash,
base64, as R4 Attachment.hash defines it), Patient, ImagingStudy (StudyInstanceUID as a
``urn:dicom:uid`` identifier, series with modality codes from DICOM CID 29), Organization (the
site), Device (the AI model, for AI findings), Practitioner (the signer) and one Observation per
finding (finding type and site in SNOMED CT, measurements as UCUM quantities, the AI confidence
as a percent component). References are ``urn:uuid:`` full URLs within the bundle.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from appliance.export import coding
from appliance.reports import language
from appliance.reports.models import ReportFinding
from appliance.reports.service import StoredReport
from appliance.reports.units import UCUM_SYSTEM, display

FHIR_VERSION = "4.0.1"
DIAGNOSTIC_STATUS = {"draft": "preliminary", "final": "final", "amended": "amended"}
OBSERVATION_STATUS = DIAGNOSTIC_STATUS
_NAMESPACE = uuid.UUID("0b7f3c1e-5a55-4a0e-9a3b-6f1f2d6c8e10")


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def _ref(resource_id: str, display_text: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"reference": f"urn:uuid:{resource_id}"}
    if display_text:
        ref["display"] = display_text
    return ref


def _coding(system: str, code: str, display_text: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display_text}


def _instant(moment: str) -> str:
    """``2024-01-02T03:04:05.678901Z`` -> FHIR instant with milliseconds."""
    return moment[:23] + "Z" if len(moment) >= 23 else moment


def _study_date(date: str | None, time: str | None) -> str | None:
    if not date or len(date) != 8 or not date.isdigit():
        return None
    return f"{date[:4]}-{date[4:6]}-{date[6:]}"


def _patient(report: StoredReport) -> dict[str, Any]:
    h = report.content.header
    name: dict[str, Any] = {"use": "official"}
    if h.last_name:
        name["family"] = h.last_name
    if h.first_name:
        name["given"] = [h.first_name]
    if h.patient_name:
        name["text"] = h.patient_name
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": h.patient_id,
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "MR",
                            "Medical record number",
                        )
                    ]
                },
                "value": h.mrn,
            }
        ],
    }
    if len(name) > 1:
        resource["name"] = [name]
    if h.sex:
        resource["gender"] = {"M": "male", "F": "female", "O": "other"}[h.sex]
    if h.birth_date:
        resource["birthDate"] = h.birth_date
    return resource


def _imaging_study(report: StoredReport, series: list[dict[str, Any]]) -> dict[str, Any]:
    h = report.content.header
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": h.study_id,
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{h.study_uid}"}],
        "status": "available",
        "subject": _ref(h.patient_id),
        "numberOfSeries": len(series),
        "numberOfInstances": sum(int(s["instance_count"] or 0) for s in series),
    }
    if h.accession_number:
        resource["identifier"].append(
            {
                "type": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "ACSN",
                            "Accession ID",
                        )
                    ]
                },
                "value": h.accession_number,
            }
        )
    started = _study_date(h.study_date, h.study_time)
    if started:
        resource["started"] = started
    modalities = [m for m in dict.fromkeys(str(s["modality"] or "") for s in series) if m]
    if modalities:
        resource["modality"] = [_coding(coding.DCM_SYSTEM, m, m) for m in modalities]
    if h.exam:
        resource["description"] = h.exam
    items = []
    for s in series:
        item: dict[str, Any] = {
            "uid": s["series_uid"],
            "modality": _coding(coding.DCM_SYSTEM, s["modality"] or "OT", s["modality"] or "OT"),
            "numberOfInstances": int(s["instance_count"] or 0),
        }
        if s["series_number"] is not None:
            item["number"] = int(s["series_number"])
        if s["description"]:
            item["description"] = s["description"]
        items.append(item)
    if items:
        resource["series"] = items
    return resource


def _observation(
    report: StoredReport,
    number: int,
    finding: ReportFinding,
    issued: str,
    refs: dict[str, str],
) -> dict[str, Any]:
    h = report.content.header
    lang = report.content.language
    kind = coding.finding_type(finding.text) or coding.GENERIC_FINDING
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _uuid(str(report.row["id"]), "finding", finding.id),
        "language": lang,
        "status": OBSERVATION_STATUS[report.status],
        "category": [
            {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/observation-category",
                        "imaging",
                        "Imaging",
                    )
                ]
            }
        ],
        "code": {
            "coding": [_coding(coding.SCT_SYSTEM, kind.value, kind.meaning)],
            "text": language.text(lang, "fhir.finding", number=number),
        },
        "subject": _ref(h.patient_id),
        "issued": issued,
        "valueString": finding.text,
        "derivedFrom": [_ref(h.study_id)],
    }
    site = coding.finding_site(finding.location)
    if finding.location or site:
        body: dict[str, Any] = {"text": finding.location or (site.meaning if site else "")}
        if site:
            body["coding"] = [_coding(coding.SCT_SYSTEM, site.value, site.meaning)]
        resource["bodySite"] = body
    if finding.source == "ai" and "device" in refs:
        resource["device"] = _ref(refs["device"])
    if "practitioner" in refs:
        resource["performer"] = [_ref(refs["practitioner"])]
    components = []
    for m in finding.measurements:
        name = coding.measurement_name(m.name)
        components.append(
            {
                "code": {
                    "coding": [
                        _coding(
                            coding.SCT_SYSTEM
                            if name.scheme_designator == "SCT"
                            else coding.DCM_SYSTEM,
                            name.value,
                            name.meaning,
                        )
                    ],
                    "text": m.name,
                },
                "valueQuantity": {
                    "value": m.value,
                    "unit": display(m.unit) or m.unit,
                    "system": UCUM_SYSTEM,
                    "code": m.unit,
                },
            }
        )
    if finding.confidence is not None:
        components.append(
            {
                "code": {"text": language.text(lang, "fhir.confidence")},
                "valueQuantity": {
                    "value": round(finding.confidence * 100, 1),
                    "unit": "%",
                    "system": UCUM_SYSTEM,
                    "code": "%",
                },
            }
        )
    if components:
        resource["component"] = components
    notes = []
    if finding.impression:
        notes.append({"text": finding.impression})
    if finding.key_image is not None:
        notes.append(
            {
                "text": language.text(
                    lang,
                    "fhir.key_image",
                    uid=finding.key_image.sop_instance_uid,
                    series=finding.key_image.series_uid,
                )
            }
        )
    source = language.text(lang, f"source.{finding.source}")
    review = language.text(lang, f"review.{finding.review_state}")
    notes.append({"text": language.text(lang, "sr.source", source=source, review=review)})
    resource["note"] = notes
    return resource


def bundle(
    report: StoredReport,
    *,
    series: list[dict[str, Any]],
    pdf: bytes,
    site: str,
) -> dict[str, Any]:
    """The FHIR R4 Bundle (JSON-ready dict) of the report's current version."""
    content = report.content
    h = content.header
    report_id = str(report.row["id"])
    issued = _instant(str(report.version["created_at"]))
    refs: dict[str, str] = {"organization": _uuid("organization", site)}
    organization = {"resourceType": "Organization", "id": refs["organization"], "name": site}
    entries: list[dict[str, Any]] = [_patient(report), organization]
    if content.provenance is not None:
        p = content.provenance
        refs["device"] = _uuid("device", p.model_id or "", p.model_revision or "")
        device: dict[str, Any] = {
            "resourceType": "Device",
            "id": refs["device"],
            "manufacturer": "RadiantAI",
            "deviceName": [{"name": p.model_id or "AI model", "type": "model-name"}],
            "note": [
                {
                    "text": language.text(
                        content.language,
                        "fhir.device",
                        engine=p.engine or "-",
                        prompt=p.prompt_id or "-",
                        prompt_version=p.prompt_version or "",
                        analysis=p.analysis_id,
                    )
                }
            ],
        }
        if p.model_revision:
            device["version"] = [{"value": p.model_revision}]
        entries.append(device)
    if report.signed and report.row["signed_by"]:
        refs["practitioner"] = str(report.row["signed_by"])
        practitioner: dict[str, Any] = {"resourceType": "Practitioner", "id": refs["practitioner"]}
        if report.signer_name:
            practitioner["name"] = [{"text": report.signer_name}]
        entries.append(practitioner)
    entries.append(_imaging_study(report, series))
    observations = [
        _observation(report, n, f, issued, refs) for n, f in enumerate(content.findings, 1)
    ]
    entries.extend(observations)
    exam = coding.exam_code(
        coding.first(content.technique_facts.modalities, h.modalities),
        coding.first(content.technique_facts.body_parts),
    )
    diagnostic: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "language": content.language,
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{report_id}"}],
        "status": report.verification.fhir_status,
        "category": [
            {
                "coding": [
                    _coding("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")
                ]
            }
        ],
        "code": {
            "coding": [_coding(coding.LOINC_SYSTEM, exam.code, exam.display)],
            "text": h.exam or exam.display,
        },
        "subject": _ref(h.patient_id, h.patient_name),
        "issued": issued,
        "performer": [_ref(refs["organization"], site)],
        "imagingStudy": [_ref(h.study_id)],
        "presentedForm": [
            {
                "contentType": "application/pdf",
                "data": base64.b64encode(pdf).decode("ascii"),
                "size": len(pdf),
                "hash": base64.b64encode(hashlib.sha1(pdf, usedforsecurity=False).digest()).decode(
                    "ascii"
                ),
                "title": language.text(
                    content.language, "fhir.pdf_title", version=report.version["version"]
                ),
                "creation": _instant(str(report.version["created_at"])),
            }
        ],
    }
    effective = _study_date(h.study_date, h.study_time)
    if effective:
        diagnostic["effectiveDateTime"] = effective
    if "practitioner" in refs:
        diagnostic["resultsInterpreter"] = [_ref(refs["practitioner"], report.signer_name)]
    if observations:
        diagnostic["result"] = [_ref(o["id"]) for o in observations]
    conclusion = content.impression
    if content.addenda:
        conclusion = "\n\n".join(
            [
                conclusion or "",
                *(
                    language.text(content.language, "fhir.addendum", version=a.version, text=a.text)
                    for a in content.addenda
                ),
            ]
        ).strip()
    if conclusion:
        diagnostic["conclusion"] = conclusion
    entries.insert(0, diagnostic)
    return {
        "resourceType": "Bundle",
        "id": _uuid(report_id, "bundle", str(report.version["version"])),
        "meta": {"lastUpdated": issued},
        "type": "collection",
        "timestamp": issued,
        "entry": [
            {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource} for resource in entries
        ],
    }
