-- What an analysis sent to a cloud AI engine (appliance/analysis/egress.py): the SHA-256 of the
-- exact request body, the number of images and the scrub actions (JSON list of "kind:count";
-- never the values). NULL for analyses run by a local engine.
ALTER TABLE analyses ADD COLUMN request_sha256 TEXT;
ALTER TABLE analyses ADD COLUMN request_image_count INTEGER;
ALTER TABLE analyses ADD COLUMN request_scrub TEXT;
