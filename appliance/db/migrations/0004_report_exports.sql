-- Report exports: PACS sends queued in sync_queue (object_type 'pacs_send') carry what to send
-- (payload JSON: report, version, peer, stored objects) and when to try next (back-off).

ALTER TABLE sync_queue ADD COLUMN payload TEXT;
ALTER TABLE sync_queue ADD COLUMN next_attempt_at TEXT;
CREATE INDEX idx_sync_queue_due ON sync_queue (object_type, status, next_attempt_at);
