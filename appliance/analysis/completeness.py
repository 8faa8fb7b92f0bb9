"""Is a study complete enough to analyse? Only once every series is stable (no new image for
``RADIANT_STABLE_AGE_S``, :mod:`appliance.studies.stability`). Before that an analysis request
is refused (409) with how many images have arrived and when the study will count as complete,
unless a radiologist forces it ("analyse what has arrived"): that analysis is marked partial,
with the number of instances it could see, wherever it or its draft appears."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlite_utils

from appliance.db.rows import iso
from appliance.errors import Conflict, NotFound
from appliance.reports import language
from appliance.studies import service as studies


class StudyIncomplete(Conflict):
    """The study is still arriving; the problem document carries ``instances`` and
    ``complete_at``."""

    title = "Study still arriving"


@dataclass(frozen=True)
class Arrival:
    """How far a study has arrived."""

    study_id: str
    complete: bool
    instances: int
    complete_at: str | None  # ISO 8601 UTC: when it counts as complete if nothing else arrives

    def words(self) -> str:
        """One sentence for people (the API's detail; the screen says the same)."""
        images = language.plural("en", "technique.images", self.instances)  # 1 image, 2 images
        if self.complete:
            return f"The study is complete ({images})."
        when = (self.complete_at or "")[:19].replace("T", " ")
        return (
            f"The study is still arriving: {images} so far. It counts as "
            f"complete once no new image has arrived for a while (at {when} UTC at the "
            "earliest). Analyse it then, or a radiologist may analyse what has arrived."
        )


def arrival(db: sqlite_utils.Database, study_id: str, stable_age_s: float) -> Arrival:
    found = studies.study_arrival(db, study_id)
    if found is None:
        raise NotFound(f"study {study_id} not found")
    status, last, count = found.status, found.last_instance_at, found.instances
    complete = status != "receiving"
    complete_at = None
    if not complete and last:
        started = datetime.fromisoformat(str(last).replace("Z", "+00:00"))
        complete_at = iso(started + timedelta(seconds=stable_age_s))
    return Arrival(study_id, complete, count, complete_at)


def refusal(found: Arrival) -> StudyIncomplete:
    return StudyIncomplete(
        found.words(),
        instances=found.instances,
        complete_at=found.complete_at,
        study_status="receiving",
    )
