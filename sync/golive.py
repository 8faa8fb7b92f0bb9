"""Going online, checked first: what online mode would start on this box, and whether each of
those remotes is configured and answers. The API, the screen and ``radiant mode online`` refuse
to switch when nothing is configured or a configured remote cannot be reached, with the reason
in plain words, and switch only after a confirmation that names what will start.

Online mode starts two things (see :mod:`appliance.system.mode`): replication of the database
and the files to the hospital's bucket (``RADIANT_SYNC_*``), and the online inference endpoint
(``RADIANT_AI_ONLINE_ENDPOINT``). A bucket is reachable when rclone lists it (the same probe as
``radiant sync check``); an endpoint when it answers HTTP at all within a few seconds (any
status: a 401 still proves the address is right; the credentials are checked by its first use).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import sqlite_utils

from appliance.audit.models import Actor
from appliance.config import Mode, Settings, prepare_data_dir
from appliance.errors import Conflict, InvalidInput
from sync import rclone
from sync.mode import ModeChange, set_mode
from sync.probe import probe, where
from sync.rclone import Rclone

ENDPOINT_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class Step:
    """One thing online mode starts, and whether it can: ``problem`` None when it can."""

    code: str  # "replication" or "cloud_engine"
    target: str  # where it goes, in words (no secrets)
    problem: str | None = None


@dataclass
class Readiness:
    """Everything online mode would start; ``ok`` when at least one is configured and every
    configured one answers."""

    steps: list[Step] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [s.problem for s in self.steps if s.problem]

    @property
    def ok(self) -> bool:
        return bool(self.steps) and not self.problems

    def refusal(self) -> str:
        """Why the box may not go online, in plain words."""
        if not self.steps:
            return (
                "Nothing to go online to: neither the hospital's bucket (RADIANT_SYNC_REMOTE) "
                "nor an online AI endpoint (RADIANT_AI_ONLINE_ENDPOINT) is configured."
            )
        return "Cannot go online: " + " ".join(self.problems)


def _endpoint_problem(url: str, timeout: float) -> str | None:
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            client.get(url.rstrip("/") + "/models")
    except httpx.HTTPError as exc:
        return f"the online AI endpoint at {url} does not answer ({type(exc).__name__})."
    return None


def readiness(
    settings: Settings,
    *,
    bucket_probe: Callable[[Settings], str | None] | None = None,
    endpoint_timeout_s: float = ENDPOINT_TIMEOUT_S,
) -> Readiness:
    """Check each remote online mode would use (this takes seconds: call it off any UI loop)."""
    found = Readiness()
    if settings.sync_remote:
        check = bucket_probe or _bucket_problem
        found.steps.append(Step("replication", where(settings), check(settings)))
    if settings.ai_online_endpoint:
        endpoint = settings.ai_online_endpoint
        found.steps.append(
            Step("cloud_engine", endpoint, _endpoint_problem(endpoint, endpoint_timeout_s))
        )
    return found


def _bucket_problem(settings: Settings) -> str | None:
    prepare_data_dir(settings)
    rclone.write_config(settings)  # what the replication manager writes before its first round
    result = probe(settings, Rclone(settings))
    return None if result.ok else (result.detail or f"{where(settings)} cannot be reached.")


def go_online(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    *,
    confirmed: bool,
    checked: Readiness | None = None,
) -> ModeChange:
    """Switch online once the remotes answer and the switch is confirmed; audited. Conflict
    (409) with the reason when a remote is missing or does not answer; InvalidInput (422) when
    the confirmation is missing (it names what would start)."""
    found = checked if checked is not None else readiness(settings)
    if not found.ok:
        raise Conflict(found.refusal(), problems=found.problems)
    if not confirmed:
        starts = "; ".join(f"{s.code} to {s.target}" for s in found.steps)
        raise InvalidInput(
            f"going online starts {starts}: confirm it (confirm: true)",
            starts=[s.code for s in found.steps],
        )
    return set_mode(db, settings, Mode.ONLINE, actor)
