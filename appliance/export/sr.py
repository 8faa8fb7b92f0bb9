"""A report as a DICOM Comprehensive 3D SR document (PS3.3 A.35.13) holding a TID 1500
Measurement Report (PS3.16), built with highdicom.

Content tree (root CONTAINER "Imaging Measurement Report"):
- TID 1204 language, TID 1001 observation context: the device (the AI model: TID 1004 with
  model name) and, once signed, the person (TID 1003, the signer);
- procedure reported (CID 100, by modality);
- "Imaging Measurements": one TID 1501 / TID 1410 measurement group per finding: tracking
  identifier and UID (TID 4108), finding type and finding site (SNOMED CT, generic code and the
  text when the text maps to none), algorithm identification (TID 4019) for AI findings,
  qualitative evaluation "Certainty of Finding" (high/medium/low) with the confidence as text,
  NUM measurements with UCUM units, the source image, and the region as SCOORD POLYLINE on it
  when the finding has a box;
- "Qualitative Evaluations" (UMLS C0034375): the narrative sections as TEXT items.

The document copies the study's patient and study attributes from the source images so it joins
the original study; VerificationFlag is UNVERIFIED until the report is signed, then VERIFIED
with the signer as Verifying Observer (PS3.3 C.17.2). The Contributing Equipment Sequence names
the algorithm (IHE AI Results). UIDs derive from the report id, version and hash, so exporting
one version twice gives the same instance.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, TM

from appliance import __version__
from appliance.export import coding, observer
from appliance.export.observer import MANUFACTURER
from appliance.export.observer import Device as Device
from appliance.export.observer import person_name as person_name
from appliance.reports import language
from appliance.reports.models import ReportContent, ReportFinding
from appliance.reports.service import StoredReport
from appliance.reports.units import meaning

SERIES_NUMBER = 9901
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = codes.DCM.Comment
# TID 1204 Language of Content Item and Descendants (RFC 5646 tags, as highdicom's default).
_LANGUAGE_CODES = {
    "en": hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)"),
    "fr": hd.sr.CodedConcept("fr-FR", "RFC5646", "French (France)"),
}
_CHARSET = "ISO_IR 192"


@dataclass(frozen=True)
class Placement:
    """Where the SR goes: its series (UID, number, description) and SOP Instance UID."""

    series_uid: str
    instance_uid: str
    series_number: int
    series_description: str
    #: Measurement groups only for findings with a region; the others become "Finding" TEXT
    #: items of the narrative (viewers such as OHIF 3.13 fail on a group without SCOORD).
    regions_only: bool = False


def sr_uids(report_id: str, version: int, digest: str) -> tuple[str, str]:
    """(series UID, SOP instance UID) of the SR of one report version (deterministic)."""
    series = generate_uid(entropy_srcs=["radiant-sr-series", report_id])
    instance = generate_uid(entropy_srcs=["radiant-sr", report_id, str(version), digest])
    return series, instance


def _dt(moment: str) -> datetime:
    return datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _text(name: Code | hd.sr.CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _measurements(finding: ReportFinding) -> list[hd.sr.Measurement]:
    result = []
    for item in finding.measurements:
        unit = hd.sr.CodedConcept(item.unit, "UCUM", meaning(item.unit)[:64])
        result.append(
            hd.sr.Measurement(name=coding.measurement_name(item.name), value=item.value, unit=unit)
        )
    return result


def _group(
    number: int, report_id: str, finding: ReportFinding, content: ReportContent
) -> (
    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
):
    tracking = hd.sr.TrackingIdentifier(
        uid=generate_uid(entropy_srcs=["radiant-finding", report_id, finding.id]),
        identifier=f"Finding {number} ({finding.id})",
    )
    site_code = coding.finding_site(finding.location)
    sites = (
        [hd.sr.FindingSite(site_code, laterality=coding.laterality(finding.location))]
        if site_code
        else None
    )
    evaluations = (
        [hd.sr.QualitativeEvaluation(coding.CERTAINTY, coding.certainty(finding.confidence))]
        if finding.confidence is not None
        else None
    )
    finding_type = coding.finding_type(finding.text) or coding.GENERIC_FINDING
    algorithm = observer.algorithm_identification(content) if finding.source == "ai" else None
    measurements = _measurements(finding) or None
    image = finding.key_image
    group: (
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    )
    if image is not None and finding.region is not None:
        r = finding.region
        corners = np.array(
            [
                [r.col0, r.row0],
                [r.col1, r.row0],
                [r.col1, r.row1],
                [r.col0, r.row1],
                [r.col0, r.row0],
            ],
            dtype=float,
        )
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=corners,
            source_image=hd.sr.SourceImageForRegion(image.sop_class_uid, image.sop_instance_uid),
        )
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_region=region,
            finding_type=finding_type,
            finding_sites=sites,
            algorithm_id=algorithm,
            measurements=measurements,
            qualitative_evaluations=evaluations,
        )
    else:
        sources = (
            [hd.sr.SourceImageForMeasurementGroup(image.sop_class_uid, image.sop_instance_uid)]
            if image is not None
            else None
        )
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            finding_type=finding_type,
            finding_sites=sites,
            algorithm_id=algorithm,
            measurements=measurements,
            qualitative_evaluations=evaluations,
            source_images=sources,
        )
    items = group[0].ContentSequence
    items.append(_text(codes.DCM.Finding, finding.text))
    if finding.location:
        items.append(_text(codes.SCT.FindingSite, finding.location))
    if finding.impression:
        items.append(_text(codes.DCM.Impression, finding.impression))
    lang = content.language
    if finding.confidence is not None:
        percent = f"{language.number(lang, round(finding.confidence * 100), 0)} %"
        value = language.number(lang, round(finding.confidence, 2), 2)
        items.append(
            _text(COMMENT, language.text(lang, "sr.confidence", value=value, percent=percent))
        )
    source = language.text(lang, f"source.{finding.source}")
    review = language.text(lang, f"review.{finding.review_state}")
    items.append(_text(COMMENT, language.text(lang, "sr.source", source=source, review=review)))
    return group


def _narrative(
    content: ReportContent, notice: str | None, unlocated: Sequence[tuple[int, ReportFinding]] = ()
) -> hd.sr.ContainerContentItem | None:
    lang = content.language
    limitations = (
        language.text(lang, "sr.limitations", text=content.limitations)
        if content.limitations
        else None
    )
    sections: list[tuple[Code, str | None]] = [
        *(
            (codes.DCM.Finding, language.text(lang, "sr.unlocated", number=n, id=f.id, text=f.text))
            for n, f in unlocated
        ),
        (codes.DCM.IndicationsForProcedure, content.clinical_indication),
        (codes.DCM.CurrentProcedureDescriptions, content.technique),
        (codes.DCM.PriorProcedureDescriptions, content.comparison),
        (codes.DCM.Impression, content.impression),
        (codes.DCM.Recommendation, content.recommendations),
        (COMMENT, limitations),
        (COMMENT, notice),
    ]
    sections.extend(
        (
            codes.DCM.Addendum,
            language.text(
                lang,
                "sr.addendum",
                text=a.text,
                version=a.version,
                author=a.author_name or language.text(lang, "unknown"),
                when=a.created_at,
            ),
        )
        for a in content.addenda
    )
    items = [_text(name, value) for name, value in sections if value]
    if not items:
        return None
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def build(
    report: StoredReport,
    evidence: Sequence[Dataset],
    device: Device,
    placement: Placement | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The SR of the report's current version; ``evidence`` holds the headers of the key
    images (and at least one image of the study, for the patient and study attributes).
    ``placement`` defaults to the export series (:data:`SERIES_NUMBER`, :func:`sr_uids`)."""
    content = report.content
    report_id = str(report.row["id"])
    version = int(report.version["version"])
    digest = str(report.version["hash"])
    modality = (
        content.technique_facts.modalities[0]
        if content.technique_facts.modalities
        else (content.header.modalities[0] if content.header.modalities else None)
    )
    numbered = list(enumerate(content.findings, 1))
    regions_only = placement is not None and placement.regions_only
    unlocated = [(n, f) for n, f in numbered if regions_only and f.region is None]
    groups = [_group(n, report_id, f, content) for n, f in numbered if (n, f) not in unlocated]
    placeholder = not groups
    if placeholder:
        # highdicom needs one group; a report without findings keeps only its narrative.
        groups = [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(), identifier="placeholder"
                )
            )
        ]
    measurement_report = hd.sr.MeasurementReport(
        observation_context=observer.observation_context(report, device),
        procedure_reported=coding.procedure(modality),
        imaging_measurements=groups,
        language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(
            _LANGUAGE_CODES[content.language]
        ),
    )
    root = measurement_report[0]
    if placeholder:
        root.ContentSequence = hd.sr.ContentSequence(
            [
                item
                for item in root.ContentSequence
                if item.ConceptNameCodeSequence[0].CodeValue != codes.DCM.ImagingMeasurements.value
            ]
        )
    notice = report.verification.notice(content.disclaimer, lang=content.language)
    narrative = _narrative(content, notice, unlocated)
    if narrative is not None:
        root.ContentSequence.append(narrative)
    if placement is None:
        series_uid, instance_uid = sr_uids(report_id, version, digest)
        placement = Placement(series_uid, instance_uid, SERIES_NUMBER, "RadiantAI report (SR)")
    provenance = content.provenance
    equipment = hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=(
            (provenance.model_id if provenance else None) or "RadiantAI appliance"
        )[:64],
        software_versions=[
            v[:64]
            for v in (
                __version__,
                provenance.model_revision if provenance else None,
                provenance.prompt_version if provenance else None,
            )
            if v
        ],
        institution_name=device.site[:64] or None,
        contribution_description=(
            "AI decision support (IHE AI Results): preliminary findings drafted by "
            f"{provenance.model_id or 'a model'} via {provenance.engine or 'an engine'}; "
            "analysis " + provenance.analysis_id
            if provenance
            else "Radiology report authored on the RadiantAI appliance"
        )[:1024],
    )
    signed_at = report.row["signed_at"]
    with warnings.catch_warnings():
        # highdicom warns about unusual names with the name in the text: keep PHI out of logs.
        warnings.simplefilter("ignore", UserWarning)
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(evidence),
            content=measurement_report,
            series_instance_uid=placement.series_uid,
            series_number=placement.series_number,
            sop_instance_uid=placement.instance_uid,
            instance_number=version,
            manufacturer=MANUFACTURER,
            is_complete=report.signed,
            is_final=report.signed,
            is_verified=report.signed,
            institution_name=device.site[:64] or None,
            verifying_observer_name=person_name(report.signer_name) if report.signed else None,
            verifying_organization=(device.site[:64] or "Unknown") if report.signed else None,
            contributing_equipment=[equipment],
            series_description=placement.series_description,
            manufacturer_model_name="RadiantAI appliance",
            software_versions=__version__,
            specific_character_set=_CHARSET,
        )
    created = _dt(str(report.version["created_at"]))
    day, clock = DA(created.strftime("%Y%m%d")), TM(created.strftime("%H%M%S.%f"))
    sr.ContentDate, sr.ContentTime = day, clock
    sr.InstanceCreationDate, sr.InstanceCreationTime = day, clock
    sr.SeriesDate, sr.SeriesTime = day, clock
    sr.TimezoneOffsetFromUTC = "+0000"
    if report.signed and signed_at and "VerifyingObserverSequence" in sr:
        sr.VerifyingObserverSequence[0].VerificationDateTime = _dt(str(signed_at)).strftime(
            "%Y%m%d%H%M%S.%f+0000"
        )
    return sr
