"""Patients: demographics keyed by MRN (DICOM PatientID), with their imaging history."""
