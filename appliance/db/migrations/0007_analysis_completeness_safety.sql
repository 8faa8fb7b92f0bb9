-- Analyses: whether the study was complete when analysed, and the whole safety verdict.
-- partial = 1: a radiologist forced the analysis while the study was still arriving;
-- instance_count: the study's instances when the analysis was requested (what it could see).
-- safety: JSON of ai.safety's verdict besides the findings: review_reasons, overall_flags,
-- repairs (per-finding flags stay in findings.flags).
ALTER TABLE analyses ADD COLUMN partial INTEGER NOT NULL DEFAULT 0 CHECK (partial IN (0, 1));
ALTER TABLE analyses ADD COLUMN instance_count INTEGER;
ALTER TABLE analyses ADD COLUMN safety TEXT;
