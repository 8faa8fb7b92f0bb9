"""The DICOM receiver: a pynetdicom SCP whose behaviour is a table of event handlers.

Services (PS3.4): Verification (Annex A, C-ECHO), Storage (Annex B, C-STORE) for every storage
SOP class pynetdicom knows, in the transfer syntaxes of
:data:`appliance.dicom.ae_setup.TRANSFER_SYNTAXES`, and Study Root
Query/Retrieve (Annex C: C-FIND, C-GET, C-MOVE at STUDY, SERIES and IMAGE level, matched over the
index by :mod:`appliance.dicom.query`). Messages and statuses are those of PS3.7 (DIMSE).

C-STORE stores what was received, as received (no transcoding): the encoded dataset goes to
:meth:`Ingestor.ingest` and the response is sent only after it returns, so a success status
(0x0000) always means the file is fsynced and indexed. Statuses (PS3.4 B.2.3):

* 0x0000 stored, or a duplicate of a stored SOP Instance UID (counted, not stored again);
* 0xA700 refused, out of resources: free disk below ``RADIANT_MIN_FREE_GB`` (nothing written);
* 0xA701 refused, out of resources: storing failed inside the appliance (retry later);
* 0xC000 cannot understand: the instance was quarantined; Error Comment gives the reason;
* 0xA900 data set does not match SOP class: the command's Affected SOP Class/Instance UID is
  not the data set's (PS3.4 B.2.3); quarantined too, nothing stored.

Datasets are received in memory (pynetdicom's default), so an aborted association never leaves a
half-received file anywhere: only a complete C-STORE request reaches the handler.

Query/retrieve is answered by :mod:`appliance.dicom.qr_scp`; the pynetdicom internals this
relies on are in :mod:`appliance.dicom.pynetdicom_compat`; the AE's contexts and the native
front end's policy in :mod:`appliance.dicom.ae_setup`; the sockets in
:mod:`appliance.dicom.listeners`. ``RADIANT_DICOM_FRONTEND=native`` (default) serves C-ECHO and
C-STORE in :mod:`appliance.dicom.frontend` and relays query/retrieve associations byte for
byte to this pynetdicom AE; ``pynetdicom`` puts the AE on the port for everything. Both call
the same :meth:`Receiver.store`, so statuses, counts and audit rows do not depend on the choice.

Associations may be limited to calling AE titles (``RADIANT_DICOM_ALLOWED_AETS``, pynetdicom's
``require_calling_aet``) and client IPs (``RADIANT_DICOM_ALLOWED_IPS``, checked on the
A-ASSOCIATE-RQ); a refused association gets an A-ASSOCIATE-RJ (PS3.8 9.3.4) and an audit row.
The called AE title must be ours (``RADIANT_DICOM_CHECK_CALLED_AET``). C-FIND, C-GET and C-MOVE
are served only to a configured peer (``RADIANT_DICOM_PEERS``: calling AE title and client
address); the front end refuses the others' query/retrieve contexts, and the handlers here check
again (status 0x0124 Refused: Not Authorized, PS3.7 C.5), both audited.
With ``RADIANT_DICOM_TLS_PORT`` a second front end serves the same over TLS (PS3.15 Annex B).
Logs and audit rows carry ids, AE titles and counts, never PHI.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import valid_ae_title
from appliance.dicom.ae_setup import build_ae, frontend_policy, peer_addresses, tls_context
from appliance.dicom.association_policy import Policy, printable_ae
from appliance.dicom.ingest import Outcome
from appliance.dicom.listeners import Listeners
from appliance.dicom.pynetdicom_compat import (
    configure_pynetdicom,
    prefer_receivers_syntaxes,
    set_nodelay,
    tls_without_cert,
)
from appliance.dicom.qr_scp import QueryRetrieveSCP
from appliance.dicom.statuses import (
    DATASET_MISMATCH,
    OUT_OF_SPACE,
    QUARANTINED,
    STORE_FAILED,
    SUCCESS,
    status,
)
from appliance.dicom.summariser import Summariser
from appliance.logs import get_logger

if TYPE_CHECKING:
    from appliance.context import AppContext  # the container only: no runtime import

log = get_logger("radiant.receiver")

GB = 1_000_000_000
JOIN_TIMEOUT_S = 10.0
REFUSAL_AUDIT_INTERVAL_S = 10.0
# A-ASSOCIATE-RJ (result, source, reason) of PS3.8 9.3.4 that pynetdicom sends, in words
_REJECT_REASONS = {
    (0x01, 0x03): "calling AE title not allowed",
    (0x01, 0x07): "called AE title not recognized",
    (0x02, 0x01): "user identity not accepted",
    (0x03, 0x02): "too many associations at once",
}


@dataclass(frozen=True)
class ReceiverStatus:
    """What the screen shows about the receiver (counts since start)."""

    listening: bool
    host: str
    port: int
    ae_title: str
    error: str | None
    associations: int
    active_associations: int
    refused_associations: int
    stored: int
    duplicates: int
    quarantined: int
    refused_out_of_space: int
    failed: int


def _actor(calling_ae: str, ip: str) -> Actor:
    return Actor(name=f"dicom:{calling_ae or '?'}", role="system", client=ip)


def _calling_ae(assoc: Association) -> str:
    """The calling AE title, made printable (it may carry anything)."""
    primitive = assoc.requestor.primitive
    title = getattr(primitive, "calling_ae_title", None) or assoc.requestor.ae_title
    return printable_ae(str(title or "").strip())


class Receiver:
    """The appliance's DICOM SCP; :meth:`start` listens without blocking, :meth:`stop` ends."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self._listeners = Listeners()
        self._peers: frozenset[tuple[str, str]] = frozenset()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._refusals = Summariser(REFUSAL_AUDIT_INTERVAL_S)
        self._error: str | None = None
        self._qr = QueryRetrieveSCP(ctx, self._peer_refusal, self._audit, self._actor)

    # -- life cycle ---------------------------------------------------------------------------

    def handlers(self) -> list[EventHandlerType]:
        """The event handler table (pynetdicom style: one handler per event)."""
        return [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_RELEASED, self._on_ended),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._qr.on_find),
            (evt.EVT_C_GET, self._qr.on_get),
            (evt.EVT_C_MOVE, self._qr.on_move),
        ]

    def start(self) -> None:
        """Listen on ``RADIANT_DICOM_HOST:RADIANT_DICOM_PORT``; a failure is logged and shown
        by :meth:`status` (the rest of the appliance keeps working)."""
        if self._listeners.server is not None:
            return
        configure_pynetdicom()
        settings = self.settings
        ae = build_ae(settings)
        self._peers = peer_addresses(settings)
        context, tls_error = tls_context(settings)
        if tls_error is not None:
            self._error = tls_error
        try:
            self._listeners.open(settings, ae, self.handlers(), context, self.policy, self)
        except OSError as exc:
            self._listeners.close()
            host, port = self._listeners.address
            self._error = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            log.error(
                "receiver_not_listening",
                host=host,
                port=port,
                error=exc.strerror or exc.__class__.__name__,
            )
            return
        if context is not None or settings.dicom_tls_port is None:
            self._error = None
        log.info(
            "receiver_listening",
            host=settings.dicom_host,
            port=settings.dicom_port,
            tls_port=settings.dicom_tls_port if context is not None else None,
            ae_title=settings.dicom_ae_title,
            frontend=settings.dicom_frontend,
        )

    def policy(self) -> Policy:
        """What the native front end serves itself, relays, and lets in."""
        return frontend_policy(self.settings, self._peers)

    def stop(self) -> None:
        """Stop accepting, abort associations still open and wait for their threads."""
        if self._listeners.stop():
            log.info("receiver_stopped", **self._snapshot())

    def status(self) -> ReceiverStatus:
        counts = self._snapshot()
        return ReceiverStatus(
            listening=self._listeners.listening(self.settings),
            host=self.settings.dicom_host,
            port=self.settings.dicom_port,
            ae_title=self.settings.dicom_ae_title,
            error=self._error,
            associations=counts["associations"],
            active_associations=self._listeners.active(),
            refused_associations=counts["refused_associations"],
            stored=counts["stored"],
            duplicates=counts["duplicates"],
            quarantined=counts["quarantined"],
            refused_out_of_space=counts["out_of_space"],
            failed=counts["failed"],
        )

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _snapshot(self) -> dict[str, int]:
        names = (
            "associations",
            "refused_associations",
            "stored",
            "duplicates",
            "quarantined",
            "out_of_space",
            "failed",
        )
        with self._lock:
            return {name: self._counts[name] for name in names}

    def _client_ip(self, assoc: Association) -> str:
        return self._listeners.client_ip(assoc)

    def _peer_refusal(self, event: evt.Event, action: str) -> bool:
        """True (and audited) when the requestor is not a configured peer: query/retrieve is
        only for ``RADIANT_DICOM_PEERS`` (calling AE title and address)."""
        assoc = event.assoc
        if (_calling_ae(assoc), self._client_ip(assoc)) not in self._peers:
            reason = "not a configured peer"
        elif self.settings.dicom_tls_verify_clients == "peers" and tls_without_cert(assoc):
            reason = "no verified client certificate"
        else:
            return False
        log.warning("query_retrieve_refused", action=action, reason=reason)
        self._audit(assoc, action, "refused", {"reason": reason})
        return True

    def _actor(self, assoc: Association) -> Actor:
        return _actor(_calling_ae(assoc), self._client_ip(assoc))

    # -- what both front ends call (appliance.dicom.frontend.Services) --------------------------

    def refuse(self, calling_ae: str, ip: str, reason: str) -> None:
        """Count, log and audit a refused association.

        A flood of refusals must not become a flood of audit writes (each one takes the
        database's write lock that storage needs): the same (address, AE title, reason) is
        audited at most once per :data:`REFUSAL_AUDIT_INTERVAL_S`, the next row saying how many
        were left out in between."""
        self._count("refused_associations")
        repeated = self._refusals.repeated((ip, calling_ae, reason))
        if repeated is None:
            return
        log.warning("association_refused", calling_ae=calling_ae, reason=reason)
        detail: dict[str, Any] = {"calling_ae": calling_ae, "reason": reason}
        if repeated:
            detail["repeated"] = repeated
        try:
            audit.record(
                self.ctx.pool.get(),
                _actor(calling_ae, ip),
                "dicom.association",
                outcome="refused",
                detail=detail,
            )
        except Exception as exc:
            log.error("audit_failed", action="dicom.association", error=exc.__class__.__name__)
        finally:
            self.ctx.pool.release()

    def established(self, calling_ae: str, ip: str) -> None:
        self._count("associations")

    def ended(self) -> None:
        """The association served on this thread ended: close its database connection."""
        self.ctx.pool.release()

    def store(self, data: bytes, calling_ae: str, ip: str) -> tuple[int, str | None]:
        """C-STORE of one Part 10 file: (status, error comment), answered only once the
        instance is durable (stored or duplicate), quarantined, or refused."""
        free = self.ctx.store.free_bytes()
        if free < self.settings.min_free_gb * GB:
            self._count("out_of_space")
            log.warning(
                "store_refused_disk_low", free_bytes=free, min_free_gb=self.settings.min_free_gb
            )
            return OUT_OF_SPACE, "out of disk space on the receiver"
        try:
            result = self.ctx.ingestor.ingest(
                data, source="network", actor=_actor(calling_ae, ip), origin=calling_ae
            )
        except Exception as exc:
            self._count("failed")
            log.error("store_failed", error=exc.__class__.__name__)
            return STORE_FAILED, "the receiver could not store it; retry later"
        if result.outcome is Outcome.STORED:
            self._count("stored")
            return SUCCESS, None
        if result.outcome is Outcome.DUPLICATE:
            self._count("duplicates")
            return SUCCESS, None
        self._count("quarantined")
        log.warning("store_quarantined", quarantine_id=result.quarantine_id, reason=result.reason)
        if result.mismatch:
            return DATASET_MISMATCH, (result.reason or "the data set does not match")[:64]
        return QUARANTINED, f"quarantined: {result.reason or 'invalid instance'}"

    # -- association events (PS3.8) -------------------------------------------------------------

    def _on_conn_open(self, event: evt.Event) -> None:
        set_nodelay(event.assoc)

    def _on_requested(self, event: evt.Event) -> None:
        """A-ASSOCIATE-RQ received: refuse a client IP that is not on the allow-list; else let
        a requestor that will receive (C-GET) choose the transfer syntax."""
        allowed = self.settings.allowed_ips
        assoc = event.assoc
        primitive = assoc.requestor.primitive
        raw_ae = str(getattr(primitive, "calling_ae_title", "") or "")
        if not valid_ae_title(raw_ae):
            reason, diagnostic = "calling AE title has characters outside PS3.5", 0x03
        elif allowed and self._client_ip(assoc) not in allowed:
            reason, diagnostic = "calling IP address not allowed", 0x01
        else:
            prefer_receivers_syntaxes(assoc)
            return
        self._refused(assoc, reason)
        # rejected-permanent, by the service user: calling AE not recognized / no reason given
        assoc.acse.send_reject(0x01, 0x01, diagnostic)
        assoc.is_rejected = True
        assoc.kill()

    def _on_rejected(self, event: evt.Event) -> None:
        """pynetdicom rejected the association (calling AE not allowed, too many, ...)."""
        primitive = event.assoc.acceptor.primitive
        key = (getattr(primitive, "result_source", 0), getattr(primitive, "diagnostic", 0))
        self._refused(event.assoc, _REJECT_REASONS.get(key, "association rejected"))

    def _refused(self, assoc: Association, reason: str) -> None:
        self.refuse(_calling_ae(assoc), self._client_ip(assoc), reason)

    def _on_established(self, event: evt.Event) -> None:
        self._count("associations")

    def _on_ended(self, event: evt.Event) -> None:
        """Released or aborted: close the database connection of the association's thread."""
        if threading.current_thread() is event.assoc:
            self.ctx.pool.release()

    # -- Verification (PS3.4 Annex A) -----------------------------------------------------------

    def _on_echo(self, event: evt.Event) -> int:
        return SUCCESS

    # -- Storage (PS3.4 Annex B) ----------------------------------------------------------------

    def _on_store(self, event: evt.Event) -> Dataset | int:
        """Store the dataset as received; answer only once it is durable (or refused)."""
        assoc = event.assoc
        try:
            data = event.encoded_dataset()
        except Exception as exc:
            self._count("failed")
            log.error("store_failed", error=exc.__class__.__name__)
            return status(STORE_FAILED, "the receiver could not store it; retry later")
        code, comment = self.store(data, _calling_ae(assoc), self._client_ip(assoc))
        return status(code, comment) if comment else code

    def _audit(self, assoc: Association, action: str, outcome: str, detail: dict[str, Any]) -> None:
        audit.record(
            self.ctx.pool.get(), self._actor(assoc), action, outcome=outcome, detail=detail
        )
