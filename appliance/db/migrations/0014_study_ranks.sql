-- The worklist's urgency ranks as a read model (appliance/triage/service.py,
-- STUDY_RANKS_TABLE_SQL): one row per study with a finished (completed or needs_review)
-- analysis found urgent (1) or critical (2) that no radiologist cleared, holding the highest
-- such rank; no row otherwise. The worklist joined this rule as a GROUP BY over every analysis,
-- evaluated again for every statement of every page, so its cost grew with the analyses of the
-- box's whole life. Triggers on analyses keep the table exact in the same transaction as the
-- change, recomputing the studies it touched from the rule, written once as a view (SQLite
-- pushes the study_id condition into the view's GROUP BY: an index search, not a scan).
CREATE VIEW study_rank_rule AS
SELECT a.study_id, MAX(CASE a.urgency WHEN 'critical' THEN 2 ELSE 1 END) AS rank
FROM analyses a
WHERE a.urgency IN ('critical', 'urgent') AND a.status IN ('completed', 'needs_review')
      AND a.urgency_review IS NOT 'cleared'
GROUP BY a.study_id;

CREATE TABLE study_ranks (
    study_id TEXT PRIMARY KEY,
    rank INTEGER NOT NULL CHECK (rank IN (1, 2))
) WITHOUT ROWID;

INSERT INTO study_ranks (study_id, rank) SELECT study_id, rank FROM study_rank_rule;

CREATE TRIGGER study_ranks_analyses_insert AFTER INSERT ON analyses
BEGIN
    DELETE FROM study_ranks WHERE study_id = NEW.study_id;
    INSERT INTO study_ranks (study_id, rank)
    SELECT study_id, rank FROM study_rank_rule WHERE study_id = NEW.study_id;
END;

CREATE TRIGGER study_ranks_analyses_update
AFTER UPDATE OF study_id, status, urgency, urgency_review ON analyses
BEGIN
    DELETE FROM study_ranks WHERE study_id IN (OLD.study_id, NEW.study_id);
    INSERT INTO study_ranks (study_id, rank)
    SELECT study_id, rank FROM study_rank_rule WHERE study_id IN (OLD.study_id, NEW.study_id);
END;

CREATE TRIGGER study_ranks_analyses_delete AFTER DELETE ON analyses
BEGIN
    DELETE FROM study_ranks WHERE study_id = OLD.study_id;
    INSERT INTO study_ranks (study_id, rank)
    SELECT study_id, rank FROM study_rank_rule WHERE study_id = OLD.study_id;
END;
