-- The worklist's urgency ranks as a read model (appliance/triage/service.py, STUDY_RANKS):
-- one row per study with a finished (completed or needs_review) analysis found urgent (1) or
-- critical (2) that no radiologist cleared, holding the highest such rank; no row otherwise.
-- The worklist joined the same rule as a GROUP BY over every analysis, evaluated again for
-- every statement of every page, so its cost grew with the analyses of the box's whole life.
-- Triggers on analyses keep it exact in the same transaction as the change.
CREATE TABLE study_ranks (
    study_id TEXT PRIMARY KEY,
    rank INTEGER NOT NULL CHECK (rank IN (1, 2))
) WITHOUT ROWID;

INSERT INTO study_ranks (study_id, rank)
SELECT a.study_id, MAX(CASE a.urgency WHEN 'critical' THEN 2 ELSE 1 END)
FROM analyses a
WHERE a.urgency IN ('critical', 'urgent') AND a.status IN ('completed', 'needs_review')
      AND a.urgency_review IS NOT 'cleared'
GROUP BY a.study_id;

CREATE TRIGGER study_ranks_analyses_insert AFTER INSERT ON analyses
BEGIN
    DELETE FROM study_ranks WHERE study_id = NEW.study_id;
    INSERT INTO study_ranks (study_id, rank)
    SELECT a.study_id, MAX(CASE a.urgency WHEN 'critical' THEN 2 ELSE 1 END)
    FROM analyses a
    WHERE a.study_id = NEW.study_id AND a.urgency IN ('critical', 'urgent')
          AND a.status IN ('completed', 'needs_review') AND a.urgency_review IS NOT 'cleared'
    GROUP BY a.study_id;
END;

CREATE TRIGGER study_ranks_analyses_update
AFTER UPDATE OF study_id, status, urgency, urgency_review ON analyses
BEGIN
    DELETE FROM study_ranks WHERE study_id IN (OLD.study_id, NEW.study_id);
    INSERT INTO study_ranks (study_id, rank)
    SELECT a.study_id, MAX(CASE a.urgency WHEN 'critical' THEN 2 ELSE 1 END)
    FROM analyses a
    WHERE a.study_id IN (OLD.study_id, NEW.study_id) AND a.urgency IN ('critical', 'urgent')
          AND a.status IN ('completed', 'needs_review') AND a.urgency_review IS NOT 'cleared'
    GROUP BY a.study_id;
END;

CREATE TRIGGER study_ranks_analyses_delete AFTER DELETE ON analyses
BEGIN
    DELETE FROM study_ranks WHERE study_id = OLD.study_id;
    INSERT INTO study_ranks (study_id, rank)
    SELECT a.study_id, MAX(CASE a.urgency WHEN 'critical' THEN 2 ELSE 1 END)
    FROM analyses a
    WHERE a.study_id = OLD.study_id AND a.urgency IN ('critical', 'urgent')
          AND a.status IN ('completed', 'needs_review') AND a.urgency_review IS NOT 'cleared'
    GROUP BY a.study_id;
END;
