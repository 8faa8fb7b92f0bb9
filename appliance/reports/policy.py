"""Who may do what to a report: one table. The report service enforces it
(:func:`require`), the API routes build their role dependency from it and the screens decide
which controls to show from it; the README's role table says the same.

Technicians create the draft (from the analysis) and hand it over; only radiologists change its
text or findings, sign it and add addenda. Administrators may create a draft and hand it over
(for a technician who is away) but not edit clinical content. Everyone signed in reads and
exports; sending to a PACS is for the clinical roles.
"""

from __future__ import annotations

from enum import StrEnum

from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.errors import Forbidden


class ReportAction(StrEnum):
    READ = "read"
    CREATE_DRAFT = "create_draft"
    EDIT_DRAFT = "edit_draft"
    REVIEW_FINDINGS = "review_findings"
    HAND_OVER = "hand_over"
    SIGN = "sign"
    ADDENDUM = "addendum"
    EXPORT = "export"
    SEND = "send"


_EVERYONE = frozenset(Role)
_CLINICAL = frozenset({Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN})
_RADIOLOGIST = frozenset({Role.RADIOLOGIST})

POLICY: dict[ReportAction, frozenset[Role]] = {
    ReportAction.READ: _EVERYONE,
    ReportAction.CREATE_DRAFT: _CLINICAL,
    ReportAction.EDIT_DRAFT: _RADIOLOGIST,
    ReportAction.REVIEW_FINDINGS: _RADIOLOGIST,
    ReportAction.HAND_OVER: frozenset({Role.ADMIN, Role.TECHNICIAN}),
    ReportAction.SIGN: _RADIOLOGIST,
    ReportAction.ADDENDUM: _RADIOLOGIST,
    ReportAction.EXPORT: _EVERYONE,
    ReportAction.SEND: _CLINICAL,
}

_WORDS = {
    ReportAction.READ: "read a report",
    ReportAction.CREATE_DRAFT: "create a report draft",
    ReportAction.EDIT_DRAFT: "edit the text or findings of a draft",
    ReportAction.REVIEW_FINDINGS: "accept or reject AI findings",
    ReportAction.HAND_OVER: "hand a draft over to a radiologist",
    ReportAction.SIGN: "sign a report",
    ReportAction.ADDENDUM: "add an addendum to a signed report",
    ReportAction.EXPORT: "export a report",
    ReportAction.SEND: "send a report to a PACS",
}


def roles(*actions: ReportAction) -> frozenset[Role]:
    """The roles allowed at least one of ``actions`` (a route serving several actions)."""
    found: frozenset[Role] = frozenset()
    for action in actions:
        found |= POLICY[action]
    return found


def allowed(role: Role | str, action: ReportAction) -> bool:
    try:
        return Role(role) in POLICY[action]
    except ValueError:
        return False


#: What the appliance itself (``Actor.system``) may do: draft from an automatic analysis, read,
#: export and send; never edit, review, sign or amend clinical content.
SYSTEM_ACTIONS = frozenset(
    {ReportAction.READ, ReportAction.CREATE_DRAFT, ReportAction.EXPORT, ReportAction.SEND}
)


def require(actor: Actor, action: ReportAction) -> None:
    """Forbidden unless the actor's role may take ``action``."""
    if actor.role == "system" and action in SYSTEM_ACTIONS:
        return
    if actor.role is None or not allowed(actor.role, action):
        who = actor.role or "this"
        allowed_roles = ", ".join(sorted(r.value for r in POLICY[action]))
        raise Forbidden(f"the {who} role may not {_WORDS[action]}; allowed: {allowed_roles}")
