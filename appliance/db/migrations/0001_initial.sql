-- RadiantAI schema, version 1: the tables of the whole product.
-- Times are ISO 8601 UTC text; ids are UUID text except the append-only logs (integer order).
-- JSON columns hold JSON text. Later migrations add columns; none edits this file.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    full_name TEXT,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'radiologist', 'technician', 'viewer')),
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,
    last_login_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    mrn TEXT NOT NULL UNIQUE,
    first_name TEXT,
    last_name TEXT,
    birth_date TEXT,
    sex TEXT CHECK (sex IN ('M', 'F', 'O')),
    phone TEXT,
    email TEXT,
    address TEXT,
    source TEXT NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'dicom')),
    demographics_conflict INTEGER NOT NULL DEFAULT 0,
    search_key TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_patients_name ON patients (last_name COLLATE NOCASE, first_name COLLATE NOCASE);

CREATE TABLE studies (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients (id) ON DELETE RESTRICT,
    study_uid TEXT NOT NULL UNIQUE,
    study_date TEXT,
    study_time TEXT,
    accession_number TEXT,
    description TEXT,
    modalities TEXT,
    referring_physician TEXT,
    status TEXT NOT NULL DEFAULT 'receiving',
    instance_count INTEGER NOT NULL DEFAULT 0,
    last_instance_at TEXT,
    stable_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_studies_patient ON studies (patient_id, study_date);
CREATE INDEX idx_studies_created ON studies (created_at);

CREATE TABLE series (
    id TEXT PRIMARY KEY,
    study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE RESTRICT,
    series_uid TEXT NOT NULL UNIQUE,
    modality TEXT,
    series_number INTEGER,
    description TEXT,
    body_part TEXT,
    status TEXT NOT NULL DEFAULT 'receiving',
    instance_count INTEGER NOT NULL DEFAULT 0,
    last_instance_at TEXT,
    stable_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_series_study ON series (study_id);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    series_id TEXT NOT NULL REFERENCES series (id) ON DELETE RESTRICT,
    sop_instance_uid TEXT NOT NULL UNIQUE,
    sop_class_uid TEXT NOT NULL,
    instance_number INTEGER,
    transfer_syntax_uid TEXT,
    rows INTEGER,
    columns INTEGER,
    image_position TEXT,
    image_orientation TEXT,
    pixel_spacing TEXT,
    slice_thickness REAL,
    number_of_frames INTEGER,
    storage_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    storage_state TEXT NOT NULL DEFAULT 'local' CHECK (storage_state IN ('local', 'remote')),
    source TEXT,
    received_at TEXT NOT NULL
);
CREATE INDEX idx_instances_series ON instances (series_id, instance_number);

CREATE TABLE volumes (
    id TEXT PRIMARY KEY,
    series_id TEXT NOT NULL REFERENCES series (id) ON DELETE RESTRICT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'building', 'ready', 'failed', 'not_applicable')),
    storage_key TEXT,
    shape TEXT,
    spacing TEXT,
    origin TEXT,
    direction TEXT,
    dtype TEXT,
    qa_notes TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_volumes_series ON volumes (series_id);

CREATE TABLE analyses (
    id TEXT PRIMARY KEY,
    study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE RESTRICT,
    series_id TEXT REFERENCES series (id) ON DELETE RESTRICT,
    prior_study_id TEXT REFERENCES studies (id) ON DELETE RESTRICT,
    analysis_type TEXT NOT NULL CHECK (analysis_type IN ('primary', 'comparison', 'focused')),
    clinical_indication TEXT,
    target TEXT,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'needs_review', 'failed', 'cancelled')),
    stage TEXT,
    engine TEXT,
    model_id TEXT,
    model_revision TEXT,
    prompt_id TEXT,
    prompt_version TEXT,
    images_sha256 TEXT,
    tokens_in INTEGER,
    tokens_out INTEGER,
    latency_ms INTEGER,
    raw_output TEXT,
    overall_impression TEXT,
    disclaimer TEXT,
    verification_flag TEXT NOT NULL DEFAULT 'UNVERIFIED'
        CHECK (verification_flag IN ('UNVERIFIED', 'VERIFIED')),
    error TEXT,
    requested_by TEXT REFERENCES users (id) ON DELETE RESTRICT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT
);
CREATE INDEX idx_analyses_study ON analyses (study_id, created_at);

CREATE TABLE findings (
    id TEXT PRIMARY KEY,
    analysis_id TEXT NOT NULL REFERENCES analyses (id) ON DELETE RESTRICT,
    series_id TEXT REFERENCES series (id) ON DELETE RESTRICT,
    instance_id TEXT REFERENCES instances (id) ON DELETE RESTRICT,
    slice_index INTEGER,
    location TEXT,
    description TEXT NOT NULL,
    impression TEXT,
    confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    box TEXT,
    flags TEXT,
    review_state TEXT NOT NULL DEFAULT 'pending'
        CHECK (review_state IN ('pending', 'accepted', 'edited', 'rejected')),
    created_at TEXT NOT NULL
);
CREATE INDEX idx_findings_analysis ON findings (analysis_id);

CREATE TABLE measurements (
    id TEXT PRIMARY KEY,
    finding_id TEXT NOT NULL REFERENCES findings (id) ON DELETE RESTRICT,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_measurements_finding ON measurements (finding_id);

CREATE TABLE reports (
    id TEXT PRIMARY KEY,
    study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE RESTRICT,
    analysis_id TEXT REFERENCES analyses (id) ON DELETE RESTRICT,
    status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'final', 'amended')),
    current_version INTEGER NOT NULL DEFAULT 1,
    created_by TEXT REFERENCES users (id) ON DELETE RESTRICT,
    signed_by TEXT REFERENCES users (id) ON DELETE RESTRICT,
    signed_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_reports_study ON reports (study_id);

CREATE TABLE report_versions (
    id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL REFERENCES reports (id) ON DELETE RESTRICT,
    version INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'final', 'amended')),
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    author_id TEXT REFERENCES users (id) ON DELETE RESTRICT,
    created_at TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (report_id, version)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT,
    action TEXT NOT NULL,
    object_type TEXT,
    object_id TEXT,
    client TEXT,
    outcome TEXT NOT NULL,
    detail TEXT,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX idx_audit_action ON audit_log (action);
CREATE INDEX idx_audit_actor ON audit_log (actor);
CREATE INDEX idx_audit_object ON audit_log (object_type, object_id);

-- Append-only records: an accidental UPDATE or DELETE fails. (Whoever drops these triggers is
-- still caught by the hash chains, which `radiant audit verify` and `radiant fsck` check.)
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER report_versions_no_update BEFORE UPDATE ON report_versions
BEGIN SELECT RAISE(ABORT, 'report_versions are immutable'); END;
CREATE TRIGGER report_versions_no_delete BEFORE DELETE ON report_versions
BEGIN SELECT RAISE(ABORT, 'report_versions are immutable'); END;

CREATE TABLE sync_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_type TEXT NOT NULL,
    object_key TEXT NOT NULL UNIQUE,
    size INTEGER,
    sha256 TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'uploading', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    done_at TEXT
);
CREATE INDEX idx_sync_queue_status ON sync_queue (status);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    stage TEXT,
    progress REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    heartbeat_at TEXT,
    finished_at TEXT
);
CREATE INDEX idx_jobs_status ON jobs (status, created_at);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT
);
