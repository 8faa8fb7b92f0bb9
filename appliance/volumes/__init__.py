"""Volumes: 3D reconstruction of DICOM series with geometry QA notes, and NIfTI I/O."""
