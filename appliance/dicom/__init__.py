"""DICOM I/O: reading and checking instances, the ingest path, the network receiver, media."""
