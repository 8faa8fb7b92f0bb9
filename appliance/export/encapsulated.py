"""The report PDF as a DICOM Encapsulated PDF instance (PS3.3 A.45.1), in the original study.

Modules: Patient and General Study (copied from a source image of the study), Encapsulated
Document Series (Modality DOC), General Equipment, SC Equipment (Conversion Type WSD),
Encapsulated Document (PS3.3 C.24.2: Burned In Annotation YES, the PDF and its length) and
SOP Common. The UID derives from the report version, like the SR's.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from appliance import __version__
from appliance.export.coding import ExamCode

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
SERIES_NUMBER = 9902
_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)
_TYPE2 = {
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
}


def pdf_uids(report_id: str, version: int, digest: str) -> tuple[str, str]:
    """(series UID, SOP instance UID) of the encapsulated PDF of one report version."""
    series = generate_uid(entropy_srcs=["radiant-pdf-series", report_id])
    instance = generate_uid(entropy_srcs=["radiant-pdf", report_id, str(version), digest])
    return series, instance


def build(
    pdf: bytes,
    source: Dataset,
    *,
    report_id: str,
    version: int,
    digest: str,
    created_at: str,
    title: str,
    exam: ExamCode,
    site: str,
) -> Dataset:
    """An Encapsulated PDF dataset (with file meta) for the PDF of one report version."""
    series_uid, instance_uid = pdf_uids(report_id, version, digest)
    moment = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in _PATIENT_STUDY:
        if keyword in source and source.get(keyword) not in (None, ""):
            setattr(ds, keyword, source.get(keyword))
        elif keyword in _TYPE2:
            setattr(ds, keyword, "")
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = SERIES_NUMBER
    ds.SeriesDescription = "RadiantAI report (PDF)"
    ds.Manufacturer = "RadiantAI"
    ds.ManufacturerModelName = "RadiantAI appliance"
    ds.SoftwareVersions = __version__
    if site:
        ds.InstitutionName = site[:64]
    ds.ConversionType = "WSD"
    ds.InstanceNumber = version
    ds.ContentDate = moment.strftime("%Y%m%d")
    ds.ContentTime = moment.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = moment.strftime("%Y%m%d%H%M%S.%f+0000")
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title[:1024]
    concept = Dataset()
    concept.CodeValue = exam.code
    concept.CodingSchemeDesignator = "LN"
    concept.CodeMeaning = exam.display[:64]
    ds.ConceptNameCodeSequence = [concept]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = instance_uid
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds
