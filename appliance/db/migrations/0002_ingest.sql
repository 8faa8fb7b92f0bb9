-- DICOM ingest: quarantine of bad input, demographics seen for one MRN, duplicate counters.

CREATE TABLE quarantine (
    id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    origin TEXT,
    reason TEXT NOT NULL,
    sop_instance_uid TEXT,
    storage_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX idx_quarantine_received ON quarantine (received_at);

-- Demographics a DICOM file gave for an existing MRN that differ from the patient's record.
-- The record is never overwritten by them; the patient is flagged for a person to reconcile.
CREATE TABLE patient_demographics (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients (id) ON DELETE RESTRICT,
    first_name TEXT,
    last_name TEXT,
    birth_date TEXT,
    sex TEXT,
    study_uid TEXT,
    seen_at TEXT NOT NULL,
    UNIQUE (patient_id, first_name, last_name, birth_date, sex)
);

ALTER TABLE instances ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN origin TEXT;
ALTER TABLE studies ADD COLUMN series_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX idx_series_status ON series (status, last_instance_at);
CREATE INDEX idx_studies_status ON studies (status, last_instance_at);
