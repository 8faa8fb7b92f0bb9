"""Replication to the hospital's bucket: Litestream for the database, rclone for objects."""
