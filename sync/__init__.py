"""Replication to the hospital's bucket: Litestream for the database, rclone for objects.

The box works for days offline; when the mode is online and the bucket answers, everything
stored meanwhile is shipped and verified. Parts:

- :mod:`sync.mode`: the online/offline switch (``RADIANT_MODE`` + audited runtime choice).
- :mod:`sync.manager`: the background rounds (probe, Litestream supervision, object worker,
  encrypted snapshot, eviction); started by the app's lifespan when a remote is configured.
- :mod:`sync.litestream`: ``litestream.yml``, the supervised ``litestream replicate``, lag.
- :mod:`sync.rclone`, :mod:`sync.crypt_keys`: ``rclone.conf`` with the crypt remote and its keys.
- :mod:`sync.queue`, :mod:`sync.uploader`: the ``sync_queue`` rows and their upload/verify.
- :mod:`sync.probe`: reachable, unreachable, no such bucket, credentials refused.
- :mod:`sync.snapshot`, :mod:`sync.restore`.
- :mod:`sync.eviction`: which studies leave the disk (the policy; storage switches the rows and
  removes the files); :mod:`sync.fetch`: the fetch-back storage uses to bring one back.
- :mod:`sync.status`, :mod:`sync.routes`, :mod:`radiant.commands.sync`: what admins see and type.
"""
