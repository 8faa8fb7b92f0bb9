"""Coded concepts for exports: finding types and sites (SNOMED CT), measurement names,
procedures (PS3.16 CID 100) and exam codes (LOINC), taken from pydicom's copy of the DICOM
code dictionaries where they exist.

Free text is matched by whole words; what does not match falls back to a generic concept
(``Finding``, ``Quantity``, ``Imaging procedure``) and the text travels alongside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

SCT_SYSTEM = "http://snomed.info/sct"
LOINC_SYSTEM = "http://loinc.org"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"

#: Generic finding type when the text names none of FINDING_TYPES (SNOMED CT 404684003).
GENERIC_FINDING: Code = codes.SCT.Finding
#: Generic measurement name when the name matches none of MEASUREMENT_NAMES.
GENERIC_QUANTITY: Code = codes.SCT.Quantity
CERTAINTY: Code = codes.DCM.CertaintyOfFinding

# Order matters: the first match wins, so specific phrases come before general words.
FINDING_TYPES: tuple[tuple[str, Code], ...] = (
    ("pleural effusion", codes.SCT.PleuralEffusion),
    ("intracranial hemorrhage", codes.SCT.IntracranialHemorrhage),
    ("intracranial haemorrhage", codes.SCT.IntracranialHemorrhage),
    ("hematoma", codes.SCT.Hematoma),
    ("haematoma", codes.SCT.Hematoma),
    ("hemorrhage", codes.SCT.Hemorrhage),
    ("haemorrhage", codes.SCT.Hemorrhage),
    ("pneumothorax", codes.SCT.Pneumothorax),
    ("effusion", codes.SCT.Effusion),
    ("nodule", codes.SCT.Nodule),
    ("mass", codes.SCT.Mass),
    ("cyst", codes.SCT.Cyst),
    ("edema", codes.SCT.Edema),
    ("oedema", codes.SCT.Edema),
    ("lesion", codes.SCT.Lesion),
)

SITES: tuple[tuple[str, Code], ...] = (
    ("frontal lobe", codes.SCT.FrontalLobe),
    ("parietal lobe", codes.SCT.ParietalLobe),
    ("temporal lobe", codes.SCT.TemporalLobe),
    ("occipital lobe", codes.SCT.OccipitalLobe),
    ("lateral ventricle", codes.SCT.LateralVentricle),
    ("white matter", codes.SCT.WhiteMatter),
    ("cerebral hemisphere", codes.SCT.CerebralHemisphere),
    ("cerebellum", codes.SCT.Cerebellum),
    ("cerebellar", codes.SCT.Cerebellum),
    ("paranasal sinus", codes.SCT.ParanasalSinus),
    ("cervical spine", codes.SCT.CervicalSpine),
    ("lumbar spine", codes.SCT.LumbarSpine),
    ("brain", codes.SCT.Brain),
    ("skull", codes.SCT.Skull),
    ("orbit", codes.SCT.Orbit),
    ("head", codes.SCT.Head),
    ("neck", codes.SCT.Neck),
    ("lung", codes.SCT.Lung),
    ("pleura", codes.SCT.Pleura),
    ("pleural", codes.SCT.Pleura),
    ("mediastinum", codes.SCT.Mediastinum),
    ("mediastinal", codes.SCT.Mediastinum),
    ("heart", codes.SCT.Heart),
    ("chest", codes.SCT.Chest),
    ("thorax", codes.SCT.Thorax),
    ("liver", codes.SCT.Liver),
    ("spleen", codes.SCT.Spleen),
    ("pancreas", codes.SCT.Pancreas),
    ("kidney", codes.SCT.Kidney),
    ("abdomen", codes.SCT.Abdomen),
    ("pelvis", codes.SCT.Pelvis),
    ("spine", codes.SCT.Spine),
    ("bone", codes.SCT.Bone),
)

LATERALITY: tuple[tuple[str, Code], ...] = (
    ("bilateral", codes.SCT.Bilateral),
    ("left", codes.SCT.Left),
    ("right", codes.SCT.Right),
)

MEASUREMENT_NAMES: tuple[tuple[str, Code], ...] = (
    ("long axis", codes.SCT.LongAxis),
    ("short axis", codes.SCT.ShortAxis),
    ("diameter", codes.SCT.Diameter),
    ("size", codes.SCT.Diameter),
    ("length", codes.SCT.Length),
    ("width", codes.SCT.Width),
    ("thickness", codes.SCT.Width),
    ("height", codes.DCM.Height),
    ("depth", codes.SCT.Depth),
    ("distance", codes.DCM.Distance),
    ("midline shift", codes.DCM.Distance),
    ("area", codes.SCT.Area),
    ("volume", codes.SCT.Volume),
    ("mean attenuation", codes.DCM.MeanAttenuationCoefficient),
    ("attenuation", codes.DCM.AttenuationCoefficient),
    ("density", codes.DCM.AttenuationCoefficient),
)

#: Procedure reported (PS3.16 CID 100 "Quantitative Diagnostic Imaging Procedures").
PROCEDURES: dict[str, Code] = {
    "CT": codes.LN.CTUnspecifiedBodyRegion,
    "MR": codes.LN.MRIUnspecifiedBodyRegion,
    "CR": codes.LN.XRUnspecifiedBodyRegion,
    "DX": codes.LN.XRUnspecifiedBodyRegion,
    "NM": codes.LN.NMUnspecifiedBodyRegion,
    "PT": codes.LN.PETUnspecifiedBodyRegion,
}
GENERIC_PROCEDURE: Code = codes.SCT.ImagingProcedure

#: LOINC exam codes for a modality and body part; else the CID 100 code of the modality,
#: else LOINC 18748-4 "Diagnostic imaging study".
EXAMS: dict[tuple[str, str], tuple[str, str]] = {
    ("CT", "HEAD"): ("24725-4", "CT Head"),
    ("CT", "BRAIN"): ("24725-4", "CT Head"),
    ("MR", "BRAIN"): ("24590-2", "MR Brain"),
    ("MR", "HEAD"): ("24590-2", "MR Brain"),
}
GENERIC_EXAM = ("18748-4", "Diagnostic imaging study")


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9]+", " ", text.lower()).strip() + " "


def _match(text: str | None, table: tuple[tuple[str, Code], ...]) -> Code | None:
    if not text:
        return None
    haystack = _words(text)
    for phrase, code in table:
        if f" {phrase} " in haystack or f" {phrase}s " in haystack:
            return code
    return None


def finding_type(text: str | None) -> Code | None:
    """The SNOMED CT finding type named in the text, or None (use GENERIC_FINDING)."""
    return _match(text, FINDING_TYPES)


def finding_site(location: str | None) -> Code | None:
    return _match(location, SITES)


def laterality(location: str | None) -> Code | None:
    return _match(location, LATERALITY)


def measurement_name(name: str) -> Code:
    return _match(name, MEASUREMENT_NAMES) or GENERIC_QUANTITY


def procedure(modality: str | None) -> Code:
    return PROCEDURES.get((modality or "").upper(), GENERIC_PROCEDURE)


def first(*lists: list[str]) -> str | None:
    """The first item of the first non-empty list."""
    for items in lists:
        if items:
            return items[0]
    return None


@dataclass(frozen=True)
class ExamCode:
    code: str
    display: str


def exam_code(modality: str | None, body_part: str | None) -> ExamCode:
    """LOINC code of the exam for FHIR DiagnosticReport.code and the PDF document title."""
    mod = (modality or "").upper()
    found = EXAMS.get((mod, (body_part or "").upper()))
    if found:
        return ExamCode(*found)
    if mod in PROCEDURES:
        code = PROCEDURES[mod]
        return ExamCode(code.value, code.meaning)
    return ExamCode(*GENERIC_EXAM)


HIGH: Code = codes.SCT.High
MEDIUM: Code = codes.SCT.Medium
LOW: Code = codes.SCT.Low


def certainty(confidence: float) -> Code:
    """Confidence band as a coded qualitative value: high >= 0.7, medium >= 0.4, else low."""
    if confidence >= 0.7:
        return HIGH
    if confidence >= 0.4:
        return MEDIUM
    return LOW
