-- Quarantine quotas and repeats (issue 16): the same bad file (same SHA-256) sent again is kept
-- once, its row counting how often it was seen and when last; the quota (size and count) evicts
-- the rows seen longest ago first.
ALTER TABLE quarantine ADD COLUMN seen_count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE quarantine ADD COLUMN last_seen_at TEXT;
UPDATE quarantine SET last_seen_at = received_at;
CREATE INDEX idx_quarantine_sha256 ON quarantine (sha256);
CREATE INDEX idx_quarantine_last_seen ON quarantine (last_seen_at);
