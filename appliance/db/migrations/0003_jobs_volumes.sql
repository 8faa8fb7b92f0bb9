-- Background jobs (cancel flag, result) and reconstructed volumes (label, source fingerprint,
-- NIfTI object facts, the reason a series is not a volume).

ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN result TEXT;
CREATE INDEX idx_jobs_kind_status ON jobs (kind, status, created_at);

ALTER TABLE volumes ADD COLUMN ordinal INTEGER NOT NULL DEFAULT 0;
ALTER TABLE volumes ADD COLUMN label TEXT;
ALTER TABLE volumes ADD COLUMN reason TEXT;
ALTER TABLE volumes ADD COLUMN fingerprint TEXT;
ALTER TABLE volumes ADD COLUMN size INTEGER;
ALTER TABLE volumes ADD COLUMN sha256 TEXT;
ALTER TABLE volumes ADD COLUMN job_id TEXT;
