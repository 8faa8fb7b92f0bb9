"""Schemas of the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in user, a system component (``system:receiver``) or anonymous."""

    name: str
    role: str | None = None
    user_id: str | None = None
    client: str | None = None
    request_id: str | None = None

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls(name=f"system:{component}", role="system")


class AuditEntry(BaseModel):
    id: int
    ts: str
    actor: str
    role: str | None
    action: str
    object_type: str | None
    object_id: str | None
    client: str | None
    outcome: str
    detail: dict[str, Any] | None
    request_id: str | None
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntry]
    total: int
    limit: int
    offset: int


class ChainReport(BaseModel):
    """Result of checking the hash chain: ``ok`` or the first bad row and why."""

    ok: bool
    rows: int
    first_bad_id: int | None = None
    reason: str | None = None


class DisplayEntry(AuditEntry):
    """An audit row with what an administrator reads beside the ids, resolved when shown: the
    account's full name and the MRN of the patient the object belongs to."""

    actor_name: str | None = None
    mrn: str | None = None


class DisplayPage(BaseModel):
    items: list[DisplayEntry]
    total: int
    limit: int
    offset: int
