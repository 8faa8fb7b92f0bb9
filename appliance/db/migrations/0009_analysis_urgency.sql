-- Study-level urgency of an analysis (ai/urgency.py): the higher of the model's own call and the
-- site's critical findings list. urgency_detail is the safety layer's assessment as JSON (model
-- level, hedged reason, flag, list matches, reasons). It is AI output: UNVERIFIED until a
-- radiologist confirms or clears it (urgency_review, by whom and when; audited).
ALTER TABLE analyses ADD COLUMN urgency TEXT CHECK (urgency IN ('routine', 'urgent', 'critical'));
ALTER TABLE analyses ADD COLUMN urgency_detail TEXT;
ALTER TABLE analyses ADD COLUMN urgency_review TEXT CHECK (urgency_review IN ('confirmed', 'cleared'));
ALTER TABLE analyses ADD COLUMN urgency_reviewed_by TEXT REFERENCES users (id) ON DELETE RESTRICT;
ALTER TABLE analyses ADD COLUMN urgency_reviewed_at TEXT;
CREATE INDEX analyses_study_urgency ON analyses (study_id, urgency);

-- Alerts (appliance/triage/alerts.py): one per analysis whose urgency is critical, shown on every
-- signed-in screen until someone acknowledges it by name (audited); a radiologist clearing the
-- urgency ends it too.
CREATE TABLE triage_alerts (
    id TEXT PRIMARY KEY,
    study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE RESTRICT,
    analysis_id TEXT NOT NULL UNIQUE REFERENCES analyses (id) ON DELETE RESTRICT,
    level TEXT NOT NULL CHECK (level IN ('critical')),
    raised_at TEXT NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT REFERENCES users (id) ON DELETE RESTRICT,
    acknowledged_name TEXT
);
CREATE INDEX triage_alerts_open ON triage_alerts (acknowledged_at, raised_at);
