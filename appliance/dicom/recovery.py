"""Start-up recovery of the object store after a crash or power cut.

A write that was interrupted leaves a ``.tmp-*`` file (removed). A file that reached its place
but whose index transaction never committed was never acknowledged: it is moved to quarantine
with that reason, so storage and index agree again (what ``radiant fsck`` checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.audit.models import Actor
from appliance.dicom.store_index import quarantine_orphan, unindexed_keys
from appliance.logs import get_logger

if TYPE_CHECKING:
    from appliance.context import AppContext  # the container only: no runtime import

log = get_logger("radiant.recovery")
ACTOR = Actor.system("recovery")
UNINDEXED = "stored but not indexed: the write was interrupted before it was acknowledged"


@dataclass(frozen=True)
class RecoveryReport:
    partials_removed: int
    orphans_quarantined: int


def recover(ctx: AppContext) -> RecoveryReport:
    """Run before receiving anything: nothing may be in flight."""
    partials = ctx.store.remove_partials()
    db = ctx.pool.get()
    orphans = 0
    for key in unindexed_keys(db, ctx.store):
        quarantine_orphan(ctx, db, key, reason=UNINDEXED, source="recovery", actor=ACTOR)
        orphans += 1
    if partials or orphans:
        log.warning("recovered", partials_removed=partials, orphans_quarantined=orphans)
    return RecoveryReport(partials, orphans)
