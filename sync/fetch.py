"""Fetch-back: an evicted instance (``storage_state = 'remote'``) that someone opens is copied
back from the bucket when the box is online, checked against the size and SHA-256 in its index
row, stored durably and marked local again."""

from __future__ import annotations

import hashlib
import threading

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import Mode
from appliance.context import AppContext
from appliance.db.connection import transaction
from appliance.db.rows import new_id
from appliance.logs import get_logger
from appliance.storage.service import CHUNK_SIZE
from sync import layout
from sync import rclone as rclone_config
from sync.mode import effective_mode
from sync.rclone import Rclone, RcloneError

log = get_logger("radiant.sync.fetch")
ACTOR = Actor.system("sync")
_LOCKS = [threading.Lock() for _ in range(16)]


def ensure_local(ctx: AppContext, instance_id: str) -> bool:
    """Bring an evicted instance's file back; True when it was fetched now. Does nothing (False)
    for a local instance, an unknown one, or when the box is offline or has no remote."""
    settings = ctx.settings
    db = ctx.pool.get()
    row = db.execute(
        "SELECT storage_key, size, sha256, storage_state FROM instances WHERE id = ?",
        (instance_id,),
    ).fetchone()
    if row is None or row[3] != "remote" or not settings.sync_remote:
        return False
    if effective_mode(db, settings) is not Mode.ONLINE:
        return False
    key, size, sha256 = str(row[0]), int(row[1]), str(row[2])
    with _LOCKS[hash(instance_id) % len(_LOCKS)]:
        state = db.execute(
            "SELECT storage_state FROM instances WHERE id = ?", (instance_id,)
        ).fetchone()
        if state is None or state[0] != "remote":
            return False
        if not layout.rclone_config(settings).exists():
            rclone_config.write_config(settings)
        tmp = layout.scratch_dir(settings) / f"fetch-{new_id()}"
        try:
            Rclone(settings).fetch(layout.object_key(key), tmp)
            digest = hashlib.sha256()
            length = 0
            with open(tmp, "rb") as stream:
                while chunk := stream.read(CHUNK_SIZE):
                    digest.update(chunk)
                    length += len(chunk)
            if length != size or digest.hexdigest() != sha256:
                log.warning("fetch_mismatch", instance_id=instance_id)
                return False
            ctx.store.put_file(key, tmp)
        except (RcloneError, OSError) as exc:
            log.warning("fetch_failed", instance_id=instance_id, error=str(exc)[-300:])
            return False
        finally:
            tmp.unlink(missing_ok=True)
        with transaction(db):
            db.execute("UPDATE instances SET storage_state = 'local' WHERE id = ?", (instance_id,))
            audit.record(
                db,
                ACTOR,
                "sync.fetch",
                object_type="instance",
                object_id=instance_id,
                detail={"size": size},
            )
    log.info("fetched", instance_id=instance_id)
    return True
