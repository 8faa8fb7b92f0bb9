"""What an analysis may send to a cloud engine, and the record of what it sent.

In online mode (``RADIANT_MODE`` or the runtime switch is ``online`` and
``RADIANT_AI_ONLINE_ENDPOINT`` is set) the model call leaves the appliance. Before it does:

- the clinical indication is scrubbed of the patient's known identifiers (name, MRN, birth
  date, accession number: :func:`ai.deidentify.scrub`);
- a radiograph whose header says Burned In Annotation (0028,0301) ``YES`` (PS3.3 C.7.6.1.1.5:
  the pixels carry identifying text) is refused unless ``RADIANT_AI_CLOUD_ALLOW_BURNED_IN`` is
  set; either way the decision is audited.

:class:`CloudPlan` carries the scrubbed indication and what was done; the service stores it with
the SHA-256 of the request body the engine sent. Local engines are unaffected: the indication is
used as typed and nothing is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from ai.deidentify import PatientIdentifiers, scrub
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import Mode, Settings
from appliance.jobs.models import JobFailed
from appliance.studies import service as studies
from appliance.system.mode import effective_mode


@dataclass(frozen=True, slots=True)
class CloudPlan:
    """What the model call will carry: the indication to send and the actions taken."""

    cloud: bool
    indication: str | None
    scrub_actions: tuple[str, ...] = ()
    burned_in: bool = False


def is_cloud_bound(db: sqlite_utils.Database, settings: Settings) -> bool:
    """True when the next model call goes to the online (cloud) endpoint."""
    return effective_mode(db, settings) is Mode.ONLINE and bool(settings.ai_online_endpoint)


def patient_identifiers(db: sqlite_utils.Database, study_id: str) -> PatientIdentifiers:
    """The identifiers the record holds for the study's patient and the study itself."""
    found = studies.patient_identity(db, study_id)
    if found is None:
        return PatientIdentifiers()
    return PatientIdentifiers(
        names=tuple(name for name in (found.last_name, found.first_name) if name),
        mrn=found.mrn,
        birth_date=found.birth_date,
        accession=found.accession_number,
    )


def plan(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    analysis: dict[str, object],
    *,
    burned_in: bool,
) -> CloudPlan:
    """Scrub and check one analysis before its model call; raises :class:`JobFailed` (audited)
    when a burned-in radiograph would go to the cloud and the site does not allow it."""
    indication = analysis.get("clinical_indication")
    text = indication if isinstance(indication, str) else None
    if not is_cloud_bound(db, settings):
        return CloudPlan(cloud=False, indication=text)
    analysis_id = str(analysis["id"])
    if burned_in:
        allowed = settings.ai_cloud_allow_burned_in
        audit.record(
            db,
            actor,
            "analysis.cloud_burned_in",
            object_type="analysis",
            object_id=analysis_id,
            outcome="success" if allowed else "denied",
            detail={"allowed": allowed, "setting": "RADIANT_AI_CLOUD_ALLOW_BURNED_IN"},
        )
        if not allowed:
            raise JobFailed(
                "the radiograph has burned-in annotation (BurnedInAnnotation YES): it is not "
                "sent to the cloud AI endpoint; switch to offline mode or set "
                "RADIANT_AI_CLOUD_ALLOW_BURNED_IN=true to allow it"
            )
    actions: tuple[str, ...] = ()
    if text:
        result = scrub(text, patient_identifiers(db, str(analysis["study_id"])))
        text = result.text
        actions = tuple(result.actions)
    return CloudPlan(cloud=True, indication=text, scrub_actions=actions, burned_in=burned_in)
