"""Who may associate with the native front end and what it accepts (PS3.8 9.3.3, 9.3.4).

The A-ASSOCIATE-RQ is judged here: protocol version, allow-lists, calling and called AE titles
(PS3.5 characters; the called one must be ours), storage only from peers when so configured,
and the application context; refusals carry the A-ASSOCIATE-RJ (result, source, reason) of
PS3.8 9.3.4. Accepted contexts are Storage and Verification (PS3.4 Annexes A, B) in the first of
the receiver's transfer syntaxes the requestor proposed; an association that proposes
Query/Retrieve or role selection is one the pynetdicom AE must serve (relayed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.config import valid_ae_title
from appliance.dicom import ul
from appliance.dicom.gate import Gate
from appliance.dicom.spool import MEMORY_LIMIT

VERIFICATION = "1.2.840.10008.1.1"
# Implicit VR LE first: the one every SCU proposes for Verification
VERIFICATION_SYNTAXES = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
)
ARTIM_S = 10.0  # accept to a whole A-ASSOCIATE-RQ; the peer closing after RJ or RP (PS3.8 9.1.5)
IDLE_S = 60.0  # an established association's next PDU must have arrived whole by then
MAX_RQ_LENGTH = 1 << 20  # an A-ASSOCIATE-RQ this long is not a real one
MAX_ASSOCIATIONS = 25
MAX_PENDING = 100
MAX_PENDING_PER_IP = 10
MAX_OBJECT_BYTES = 4 << 30
# A-ASSOCIATE-RJ (result, source, reason), PS3.8 9.3.4
REJECT_IP = (1, 1, 1)
REJECT_NO_REASON = (1, 1, 1)
REJECT_CALLING_AE = (1, 1, 3)
REJECT_CALLED_AE = (1, 1, 7)
REJECT_CONTEXT_NAME = (1, 1, 2)
REJECT_PROTOCOL_VERSION = (1, 2, 2)
REJECT_BUSY = (2, 3, 2)


class Services(Protocol):
    """What the front end asks the receiver to do (counting, auditing, storing)."""

    def refuse(self, calling_ae: str, ip: str, reason: str) -> None: ...

    def established(self, calling_ae: str, ip: str) -> None: ...

    def store(self, data: bytes, calling_ae: str, ip: str) -> tuple[int, str | None]: ...

    def ended(self) -> None: ...


@dataclass(frozen=True)
class Policy:
    """What the front end accepts: storage classes and syntaxes, allow-lists, limits."""

    storage_classes: frozenset[str]
    storage_syntaxes: tuple[str, ...]  # in the receiver's order of preference
    relayed_classes: frozenset[str]
    allowed_aets: frozenset[str] = frozenset()
    allowed_ips: frozenset[str] = frozenset()
    max_pdu: int = 1 << 20
    max_associations: int = MAX_ASSOCIATIONS
    artim_s: float = ARTIM_S
    idle_s: float = IDLE_S
    called_ae: str | None = None  # None: any called AE title is accepted
    peers: frozenset[tuple[str, str]] = frozenset()  # (AE title, IP) allowed query/retrieve
    store_peers_only: bool = False
    max_pending: int = MAX_PENDING
    max_pending_per_ip: int = MAX_PENDING_PER_IP
    max_object_bytes: int = MAX_OBJECT_BYTES
    spool_dir: Path | None = None
    spool_memory: int = MEMORY_LIMIT

    def gate(self) -> Gate:
        """A connection gate with this policy's limits."""
        return Gate(
            max_associations=self.max_associations,
            max_pending=self.max_pending,
            max_pending_per_ip=self.max_pending_per_ip,
            artim_s=self.artim_s,
        )


def printable_ae(title: str) -> str:
    """An AE title fit for logs and the audit trail: any character outside PS3.5's default
    repertoire (controls, backslash, non-ASCII) becomes ``?``; at most 16 characters."""
    return "".join(ch if " " <= ch <= "~" and ch != "\\" else "?" for ch in title[:16])


def negotiate(rq: ul.AssociateRQ, policy: Policy) -> list[ul.ContextResult]:
    """The result of each proposed context (PS3.8 9.3.3.2): storage and Verification contexts
    are accepted in the first of the receiver's syntaxes the requestor proposed; anything
    else is refused as an abstract syntax not supported."""
    results: list[ul.ContextResult] = []
    for cx in rq.contexts:
        proposed = cx.transfer_syntaxes
        first = proposed[0] if proposed else ""
        if cx.abstract_syntax in policy.storage_classes:
            ours: tuple[str, ...] = policy.storage_syntaxes
        elif cx.abstract_syntax == VERIFICATION:
            ours = VERIFICATION_SYNTAXES
        else:
            results.append(ul.ContextResult(cx.context_id, ul.ABSTRACT_SYNTAX_NOT_SUPPORTED, first))
            continue
        chosen = next((ts for ts in ours if ts in proposed), None)
        if chosen is None:
            results.append(
                ul.ContextResult(cx.context_id, ul.TRANSFER_SYNTAXES_NOT_SUPPORTED, first)
            )
        else:
            results.append(ul.ContextResult(cx.context_id, ul.ACCEPTANCE, chosen))
    return results


def proposes_query_retrieve(rq: ul.AssociateRQ, policy: Policy) -> bool:
    return any(cx.abstract_syntax in policy.relayed_classes for cx in rq.contexts)


def wants_relay(rq: ul.AssociateRQ, policy: Policy) -> bool:
    """An association the pynetdicom AE must serve: it proposes a relayed SOP class, or asks
    for role selection or extended negotiation (C-GET's storage sub-operations)."""
    return (
        any(cx.abstract_syntax in policy.relayed_classes for cx in rq.contexts)
        or bool(rq.roles)
        or rq.extended_negotiation
    )


def is_peer(rq: ul.AssociateRQ, ip: str, policy: Policy) -> bool:
    """A configured query/retrieve peer: calling AE title and address (RADIANT_DICOM_PEERS)."""
    return (rq.calling_ae, ip) in policy.peers


def refusal(rq: ul.AssociateRQ, ip: str, policy: Policy) -> tuple[str, tuple[int, int, int]] | None:
    """Why the association is rejected and the A-ASSOCIATE-RJ to send; None: let it in."""
    if not rq.protocol_version & 1:
        return "protocol version not supported", REJECT_PROTOCOL_VERSION
    if policy.allowed_ips and ip not in policy.allowed_ips:
        return "calling IP address not allowed", REJECT_IP
    if not valid_ae_title(rq.calling_ae):
        return "calling AE title has characters outside PS3.5", REJECT_CALLING_AE
    if not valid_ae_title(rq.called_ae):
        return "called AE title has characters outside PS3.5", REJECT_CALLED_AE
    if policy.called_ae is not None and rq.called_ae != policy.called_ae:
        return "called AE title not recognized", REJECT_CALLED_AE
    if policy.allowed_aets and rq.calling_ae not in policy.allowed_aets:
        return "calling AE title not allowed", REJECT_CALLING_AE
    if policy.store_peers_only and not is_peer(rq, ip, policy):
        return "storage only from configured peers", REJECT_CALLING_AE
    if rq.application_context != ul.APPLICATION_CONTEXT:
        return "application context not supported", REJECT_CONTEXT_NAME
    return None
