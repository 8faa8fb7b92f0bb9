"""Schemas of the sync status and the mode switch."""

from __future__ import annotations

from pydantic import BaseModel, Field

from appliance.config import Mode


class ModeIn(BaseModel):
    mode: Mode
    confirm: bool = Field(
        default=False, description="Going online: true once the administrator saw what starts"
    )


class OnlineStep(BaseModel):
    code: str = Field(description="replication or cloud_engine")
    target: str
    problem: str | None = Field(default=None, description="Why it cannot start, in words")


class OnlineCheck(BaseModel):
    """What going online would start, and whether it can (``refusal`` when not)."""

    ok: bool
    steps: list[OnlineStep]
    refusal: str | None = None


class ModeOut(BaseModel):
    mode: Mode
    previous: Mode


class RemoteInfo(BaseModel):
    kind: str
    bucket: str
    prefix: str
    endpoint: str | None
    encrypted: bool


class DatabaseReplication(BaseModel):
    """Litestream: ``lag_s`` is the age of its last successful sync to the bucket."""

    running: bool
    pid: int | None
    last_sync_at: str | None
    lag_s: float | None
    stale: bool
    detail: str | None = None


class ObjectQueue(BaseModel):
    pending: int
    pending_bytes: int
    uploading: int
    uploading_bytes: int
    failed: int
    failed_bytes: int
    done: int
    done_bytes: int
    evicted_instances: int


class SyncStatus(BaseModel):
    mode: Mode
    configured: bool
    remote: RemoteInfo | None
    reachability: str | None  # reachable | unreachable | no_bucket | denied | None (not probed)
    checked_at: str | None
    database: DatabaseReplication
    objects: ObjectQueue
    last_snapshot_at: str | None
    last_error: str | None
