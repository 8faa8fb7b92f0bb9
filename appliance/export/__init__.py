"""Report exports: PDF, JSON, DICOM Comprehensive 3D SR (TID 1500), FHIR R4, send to PACS."""
