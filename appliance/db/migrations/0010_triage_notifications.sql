-- Critical alert notifications to the hospital (appliance/triage/notify.py): an outbox, one row
-- per critical alert, written in the same transaction as the alert. A delivery loop posts the
-- signed FHIR Communication when a webhook is configured and the box is online, and retries with
-- backoff (next_attempt_at) until the receiver answers 2xx; rows older than the configured age
-- expire instead of being sent late. The body holds no patient demographics.
CREATE TABLE triage_notifications (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL UNIQUE REFERENCES triage_alerts (id) ON DELETE RESTRICT,
    study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE RESTRICT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'expired')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    delivered_at TEXT
);
CREATE INDEX triage_notifications_due ON triage_notifications (status, next_attempt_at);
