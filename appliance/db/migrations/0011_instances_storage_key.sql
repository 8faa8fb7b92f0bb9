-- Instance files are looked up by object key: a reader whose file is missing checks whether it
-- was evicted (appliance/storage/instances.py), the sync uploader and fsck ask whether a key is
-- indexed. Without an index each lookup scanned the table.
CREATE INDEX idx_instances_storage_key ON instances (storage_key);
