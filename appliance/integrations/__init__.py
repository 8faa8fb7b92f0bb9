"""Links to hospital systems: PACS (DICOM C-STORE with a persistent retry queue)."""
