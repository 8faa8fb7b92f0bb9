-- Replication queue (sync/): every durable file gets its sync_queue row in the same transaction
-- as the index row that makes it durable, whoever writes it (C-STORE, USB/CD, web upload,
-- overwrite, volume builds, quarantine). Keys are paths relative to the data dir. A new version
-- of a file under the same key (different SHA-256) makes its row pending again.

CREATE TRIGGER sync_queue_instances_insert AFTER INSERT ON instances
WHEN NEW.storage_state = 'local'
BEGIN
    INSERT INTO sync_queue (object_type, object_key, size, sha256, status, attempts,
                            created_at, updated_at)
    VALUES ('dicom', 'objects/' || NEW.storage_key, NEW.size, NEW.sha256, 'pending', 0,
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    ON CONFLICT (object_key) DO UPDATE SET
        size = excluded.size, sha256 = excluded.sha256, status = 'pending', attempts = 0,
        last_error = NULL, done_at = NULL, updated_at = excluded.updated_at
    WHERE sync_queue.sha256 IS NOT excluded.sha256;
END;

CREATE TRIGGER sync_queue_instances_update AFTER UPDATE OF storage_key, sha256 ON instances
WHEN NEW.storage_state = 'local'
     AND (NEW.storage_key IS NOT OLD.storage_key OR NEW.sha256 IS NOT OLD.sha256)
BEGIN
    INSERT INTO sync_queue (object_type, object_key, size, sha256, status, attempts,
                            created_at, updated_at)
    VALUES ('dicom', 'objects/' || NEW.storage_key, NEW.size, NEW.sha256, 'pending', 0,
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    ON CONFLICT (object_key) DO UPDATE SET
        size = excluded.size, sha256 = excluded.sha256, status = 'pending', attempts = 0,
        last_error = NULL, done_at = NULL, updated_at = excluded.updated_at
    WHERE sync_queue.sha256 IS NOT excluded.sha256;
END;

CREATE TRIGGER sync_queue_volumes_insert AFTER INSERT ON volumes
WHEN NEW.storage_key IS NOT NULL
BEGIN
    INSERT INTO sync_queue (object_type, object_key, size, sha256, status, attempts,
                            created_at, updated_at)
    VALUES ('volume', 'objects/' || NEW.storage_key, NEW.size, NEW.sha256, 'pending', 0,
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    ON CONFLICT (object_key) DO UPDATE SET
        size = excluded.size, sha256 = excluded.sha256, status = 'pending', attempts = 0,
        last_error = NULL, done_at = NULL, updated_at = excluded.updated_at
    WHERE sync_queue.sha256 IS NOT excluded.sha256;
END;

CREATE TRIGGER sync_queue_volumes_update AFTER UPDATE OF storage_key, sha256 ON volumes
WHEN NEW.storage_key IS NOT NULL
     AND (NEW.storage_key IS NOT OLD.storage_key OR NEW.sha256 IS NOT OLD.sha256)
BEGIN
    INSERT INTO sync_queue (object_type, object_key, size, sha256, status, attempts,
                            created_at, updated_at)
    VALUES ('volume', 'objects/' || NEW.storage_key, NEW.size, NEW.sha256, 'pending', 0,
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    ON CONFLICT (object_key) DO UPDATE SET
        size = excluded.size, sha256 = excluded.sha256, status = 'pending', attempts = 0,
        last_error = NULL, done_at = NULL, updated_at = excluded.updated_at
    WHERE sync_queue.sha256 IS NOT excluded.sha256;
END;

CREATE TRIGGER sync_queue_quarantine_insert AFTER INSERT ON quarantine
BEGIN
    INSERT OR IGNORE INTO sync_queue (object_type, object_key, size, sha256, status, attempts,
                                      created_at, updated_at)
    VALUES ('quarantine', 'quarantine/' || NEW.storage_path, NEW.size, NEW.sha256, 'pending', 0,
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;

-- Files stored before this migration.
INSERT OR IGNORE INTO sync_queue (object_type, object_key, size, sha256, status, attempts,
                                  created_at, updated_at)
SELECT 'dicom', 'objects/' || storage_key, size, sha256, 'pending', 0,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM instances WHERE storage_state = 'local';

INSERT OR IGNORE INTO sync_queue (object_type, object_key, size, sha256, status, attempts,
                                  created_at, updated_at)
SELECT 'volume', 'objects/' || storage_key, size, sha256, 'pending', 0,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM volumes WHERE storage_key IS NOT NULL;

INSERT OR IGNORE INTO sync_queue (object_type, object_key, size, sha256, status, attempts,
                                  created_at, updated_at)
SELECT 'quarantine', 'quarantine/' || storage_path, size, sha256, 'pending', 0,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM quarantine;
