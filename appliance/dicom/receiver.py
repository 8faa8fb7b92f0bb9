"""The DICOM receiver: a pynetdicom SCP whose behaviour is a table of event handlers.

Services (PS3.4): Verification (Annex A, C-ECHO), Storage (Annex B, C-STORE) for every storage
SOP class pynetdicom knows, in the transfer syntaxes of :data:`TRANSFER_SYNTAXES`, and Study Root
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

C-GET and C-MOVE send the stored files' bytes unchanged: a sub-operation is sent only over a
presentation context whose transfer syntax is the file's own; otherwise it fails (counted in
Number of Failed Sub-operations and listed in Failed SOP Instance UID List, with an Error
Comment) instead of being transcoded. For this, the receiver switches pynetdicom to sending
stored files in chunks without decoding (``STORE_SEND_CHUNKED_DATASET``), process-wide.

Network front end (``RADIANT_DICOM_FRONTEND``): ``native`` (default) puts
:mod:`appliance.dicom.frontend` on the port, which serves C-ECHO and C-STORE associations itself
(lower per-instance overhead than pynetdicom's polling reactor) and relays any association that
proposes Query/Retrieve byte for byte to this pynetdicom AE, then listening on an internal
127.0.0.1 port; ``pynetdicom`` puts the pynetdicom AE on the port for everything. Both call the
same :meth:`Receiver.store`, so statuses, counts and audit rows do not depend on the choice.

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

import logging
import math
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, _config, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from appliance import tls as box_certificate
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.config import Settings, valid_ae_title
from appliance.context import AppContext
from appliance.dicom import tls
from appliance.dicom.frontend import Frontend, Policy, printable_ae
from appliance.dicom.ingest import Outcome
from appliance.dicom.query import (
    ERROR_COMMENT_MAX,
    UNABLE_TO_PROCESS,
    Query,
    QueryError,
    StoredInstance,
    find,
    instances,
    parse_identifier,
    retrieve_query,
)
from appliance.logs import get_logger

log = get_logger("radiant.receiver")

# Transfer syntaxes accepted for storage (PS3.5 Annex A / PS3.6 Annex A)
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
# DIMSE statuses (PS3.4 B.2.3 Storage, C.4 Query/Retrieve; PS3.7 Annex C)
SUCCESS = 0x0000
CANCEL = 0xFE00
PENDING = 0xFF00
OUT_OF_SPACE = 0xA700
STORE_FAILED = 0xA701
QUARANTINED = 0xC000
DATASET_MISMATCH = 0xA900  # the command's SOP Class/Instance UID is not the data set's
SUBOPERATIONS_FAILED = 0xA702  # every C-GET/C-MOVE sub-operation failed
SUBOPERATIONS_WARNING = 0xB000  # sub-operations complete, one or more failures
MOVE_DESTINATION_UNKNOWN = 0xA801
NOT_AUTHORIZED = 0x0124  # Refused: Not Authorized (PS3.7 C.5)
GB = 1_000_000_000
MAX_PDU = 1 << 20  # largest P-DATA PDU we accept; the peer sends at most this much per PDU
MAX_CONTEXTS = 128  # presentation contexts one A-ASSOCIATE-RQ may propose (PS3.8 9.3.2.2)
JOIN_TIMEOUT_S = 10.0
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


def _status(code: int, comment: str | None = None) -> Dataset:
    """A status Dataset for a DIMSE response (PS3.7 Annex C); Error Comment is LO (64)."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:ERROR_COMMENT_MAX]
    return ds


def _failed_list(uids: list[str]) -> Dataset:
    """The Identifier of a C-GET/C-MOVE failure or warning (PS3.4 C.4.2.1.4.2)."""
    ds = Dataset()
    ds.FailedSOPInstanceUIDList = uids
    return ds


def _nodelay(assoc: Association) -> None:
    """TCP_NODELAY: without it each small DIMSE message waits on Nagle/delayed ACK.

    (pynetdicom's reactors also poll with 1 ms sleeps; shortening the DUL's ``_run_loop_delay``
    was tried and made C-MOVE sub-associations fail to negotiate under load: left alone.)"""
    sock = getattr(assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _actor(calling_ae: str, ip: str) -> Actor:
    return Actor(name=f"dicom:{calling_ae or '?'}", role="system", client=ip)


def _calling_ae(assoc: Association) -> str:
    """The calling AE title, made printable (it may carry anything)."""
    primitive = assoc.requestor.primitive
    title = getattr(primitive, "calling_ae_title", None) or assoc.requestor.ae_title
    return printable_ae(str(title or "").strip())


def _tls_without_cert(assoc: Association) -> bool:
    """A TLS association (pynetdicom's own TLS port) whose peer presented no certificate."""
    sock = getattr(assoc.dul.socket, "socket", None)
    return isinstance(sock, ssl.SSLSocket) and not sock.getpeercert()


def peer_addresses(settings: Settings) -> frozenset[tuple[str, str]]:
    """(AE title, IP) of each configured peer; a host name counts with each of its addresses
    (resolved at start; a name that does not resolve allows nothing)."""
    pairs: set[tuple[str, str]] = set()
    for peer in settings.peers.values():
        pairs.add((peer.ae_title, peer.host))
        try:
            infos = socket.getaddrinfo(peer.host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            log.warning("peer_unresolved", peer=peer.ae_title)
            continue
        pairs.update((peer.ae_title, str(info[4][0])) for info in infos)
    return frozenset(pairs)


SUBASSOCIATION_WAIT_S = 30.0
REFUSAL_AUDIT_INTERVAL_S = 10.0


class _Summariser:
    """At most one event per key per ``interval`` seconds; the others are counted."""

    MAX_KEYS = 10_000

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, ...], tuple[float, int]] = {}

    def repeated(self, key: tuple[str, ...]) -> int | None:
        """None: leave this one out; else how many were left out since the last one."""
        now = time.monotonic()
        with self._lock:
            last, left_out = self._seen.get(key, (-math.inf, 0))
            if now - last < self.interval:
                self._seen[key] = (last, left_out + 1)
                return None
            if len(self._seen) >= self.MAX_KEYS:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
            self._seen[key] = (now, 0)
            return left_out


def _can_send(assoc: Association, item: StoredInstance) -> bool:
    """An accepted context for the SOP class with exactly the file's transfer syntax, in
    which we may act as the Storage SCU (C-GET: the requestor took the SCP role)."""
    return any(
        cx.abstract_syntax == item.sop_class_uid
        and cx.transfer_syntax
        and cx.transfer_syntax[0] == item.transfer_syntax_uid
        and cx.as_scu
        for cx in assoc.accepted_contexts
    )


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings the receiver relies on.

    No identifier or event logging (it would print PHI); datasets received in memory (no
    half-written temp files); stored files sent as they are, never decoded and re-encoded.
    """
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.STORE_RECV_CHUNKED_DATASET = False
    _config.STORE_SEND_CHUNKED_DATASET = True
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def add_supported_contexts(ae: AE) -> None:
    """Every storage SOP class with :data:`TRANSFER_SYNTAXES`, accepting both roles (C-GET's
    SCP/SCU role selection, PS3.7 D.3.3.4), plus Verification and Study Root Q/R."""
    for storage in AllStoragePresentationContexts:
        ae.add_supported_context(
            str(storage.abstract_syntax), TRANSFER_SYNTAXES, scu_role=True, scp_role=True
        )
    for service in (
        Verification,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    ):
        ae.add_supported_context(service)


class _StoredFileSender:
    """Stands in for ``Association.send_c_store`` during C-GET/C-MOVE sub-operations.

    pynetdicom hands each pending Dataset to ``send_c_store``; for the ones this receiver
    announced, the stored file is sent instead (in chunks, bytes unchanged), and the outcome is
    kept so the final response can list every failed instance.
    """

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.paths: dict[str, Path] = {}
        self.failed: list[str] = []
        self.completed = 0

    @classmethod
    def attach(cls, assoc: Association) -> _StoredFileSender:
        current = assoc.__dict__.get("send_c_store")
        if isinstance(current, cls):
            return current
        sender = cls(assoc)
        setattr(assoc, "send_c_store", sender)  # noqa: B010 (shadows the bound method)
        return sender

    def begin(self) -> None:
        self.paths.clear()
        self.failed = []
        self.completed = 0

    def __call__(
        self,
        dataset: Dataset | str | Path,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        uid = str(getattr(dataset, "SOPInstanceUID", ""))
        path = self.paths.pop(uid, None) if isinstance(dataset, Dataset) else None
        target = path if path is not None else dataset
        try:
            result = Association.send_c_store(
                self.assoc, target, msg_id, priority, originator_aet, originator_id
            )
        except Exception:
            if path is not None:
                self.failed.append(uid)
            raise
        if path is not None:
            code = int(result.get("Status", UNABLE_TO_PROCESS))
            if code == SUCCESS or 0xB000 <= code <= 0xBFFF:
                self.completed += 1
            else:
                self.failed.append(uid)
        return result


class _SenderTakesEveryMessage:
    """Stands in for ``DIMSEServiceProvider.get_msg`` on a C-MOVE sub-association: its own
    reactor thread never takes a message off the DIMSE queue; the thread sending the C-STOREs
    (which waits on that queue for each response) takes them all.

    Why: pynetdicom's ``send_c_store`` pauses the association's reactor before sending by
    clearing a checkpoint and waiting for the reactor's ``_is_paused`` flag. Right after the
    previous ``send_c_store`` resumed the reactor, that flag still reads paused until the
    reactor thread runs again, so under CPU load the next request goes out with the reactor
    actually running; when it then polls the queue it takes the C-STORE-RSP, drops it
    ("Received unexpected C-STORE service message"), the sender waits out the DIMSE timeout and
    aborts, and this and every remaining sub-operation fail. On a sub-association we only send
    requests (the peer has nothing for the reactor to serve), so nothing is lost by this.
    """

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.get_msg = assoc.dimse.get_msg

    @classmethod
    def install(cls, assoc: Association) -> None:
        """Before the association's reactor starts (from its EVT_ESTABLISHED handler)."""
        if not isinstance(assoc.dimse.__dict__.get("get_msg"), cls):
            setattr(assoc.dimse, "get_msg", cls(assoc))  # noqa: B010 (shadows the method)

    def __call__(self, block: bool = False) -> tuple[int | None, Any]:
        if threading.current_thread() is self.assoc:
            return None, None
        return self.get_msg(block)


class Receiver:
    """The appliance's DICOM SCP; :meth:`start` listens without blocking, :meth:`stop` ends."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self._server: ThreadedAssociationServer | None = None
        self._frontend: Frontend | None = None
        self._tls_frontend: Frontend | None = None
        self._tls_server: ThreadedAssociationServer | None = None
        self._peers: frozenset[tuple[str, str]] = frozenset()
        self._internal_port: int | None = None
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._refusals = _Summariser(REFUSAL_AUDIT_INTERVAL_S)
        self._error: str | None = None

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
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
        ]

    def start(self) -> None:
        """Listen on ``RADIANT_DICOM_HOST:RADIANT_DICOM_PORT``; a failure is logged and shown
        by :meth:`status` (the rest of the appliance keeps working)."""
        if self._server is not None:
            return
        configure_pynetdicom()
        settings = self.settings
        ae = AE(ae_title=settings.dicom_ae_title)
        ae.maximum_pdu_size = MAX_PDU
        ae.require_calling_aet = sorted(settings.allowed_aets)
        ae.require_called_aet = settings.dicom_check_called_aet
        ae.maximum_associations = settings.dicom_max_associations
        ae.acse_timeout = settings.dicom_artim_s
        ae.network_timeout = settings.dicom_idle_s
        add_supported_contexts(ae)
        self._peers = peer_addresses(settings)
        address = (settings.dicom_host, settings.dicom_port)
        native = settings.dicom_frontend == "native"
        context = None
        if settings.dicom_tls_port is not None:
            # the site's certificate (RADIANT_TLS_CERT/KEY) or else the box's own (appliance.tls)
            pair = box_certificate.certificate_paths(settings)
            try:
                context = tls.server_context(
                    pair[0] if pair else None,
                    pair[1] if pair else None,
                    client_ca=settings.dicom_tls_client_ca,
                    verify_clients=settings.dicom_tls_verify_clients,
                )
            except tls.TLSConfigError as exc:
                self._error = f"DICOM TLS port not opened: {exc}"
                log.error("receiver_tls_failed", error=str(exc))
        try:
            if native:
                # the pynetdicom AE serves what the front end relays, on a loopback-only port
                inner = ("127.0.0.1", 0)
                server = ae.start_server(inner, block=False, evt_handlers=self.handlers())
                assert server is not None  # block=False returns the server
                self._server = server
                self._internal_port = int(server.server_address[1])
                policy = self.policy()
                gate = policy.gate()  # one count of associations for both ports
                frontend = Frontend(
                    settings.dicom_host,
                    settings.dicom_port,
                    policy,
                    self,
                    relay_to=lambda: self._internal_port,
                    gate=gate,
                )
                frontend.start()
                self._frontend = frontend
                if context is not None and settings.dicom_tls_port is not None:
                    address = (settings.dicom_host, settings.dicom_tls_port)
                    secure = Frontend(
                        settings.dicom_host,
                        settings.dicom_tls_port,
                        policy,
                        self,
                        relay_to=lambda: self._internal_port,
                        ssl_context=context,
                        client_cert_for_qr=settings.dicom_tls_verify_clients == "peers",
                        gate=gate,
                    )
                    secure.start()
                    self._tls_frontend = secure
            else:
                self._server = ae.start_server(address, block=False, evt_handlers=self.handlers())
                if context is not None and settings.dicom_tls_port is not None:
                    address = (settings.dicom_host, settings.dicom_tls_port)
                    self._tls_server = ae.start_server(
                        address, block=False, evt_handlers=self.handlers(), ssl_context=context
                    )
        except OSError as exc:
            self._stop_listeners()
            self._error = f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}"
            log.error(
                "receiver_not_listening",
                host=address[0],
                port=address[1],
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

    def _stop_listeners(self) -> None:
        """Close what :meth:`start` opened before it failed."""
        for frontend in (self._frontend, self._tls_frontend):
            if frontend is not None:
                frontend.stop(JOIN_TIMEOUT_S)
        self._frontend = self._tls_frontend = None
        for server in (self._server, self._tls_server):
            if server is not None:
                server.shutdown()
        self._server = self._tls_server = None

    def policy(self) -> Policy:
        """What the native front end serves itself, relays, and lets in."""
        storage = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
        relayed = frozenset(
            str(uid)
            for uid in (
                StudyRootQueryRetrieveInformationModelFind,
                StudyRootQueryRetrieveInformationModelGet,
                StudyRootQueryRetrieveInformationModelMove,
            )
        )
        settings = self.settings
        return Policy(
            storage_classes=storage,
            storage_syntaxes=tuple(TRANSFER_SYNTAXES),
            relayed_classes=relayed,
            allowed_aets=settings.allowed_aets,
            allowed_ips=settings.allowed_ips,
            max_pdu=MAX_PDU,
            max_associations=settings.dicom_max_associations,
            artim_s=settings.dicom_artim_s,
            idle_s=settings.dicom_idle_s,
            called_ae=settings.dicom_ae_title if settings.dicom_check_called_aet else None,
            peers=self._peers,
            store_peers_only=settings.dicom_store_peers_only,
            max_pending=settings.dicom_max_pending,
            max_pending_per_ip=settings.dicom_max_pending_per_ip,
            max_object_bytes=settings.dicom_max_object_mb << 20,
            spool_dir=settings.data_dir / "spool",
        )

    def stop(self) -> None:
        """Stop accepting, abort associations still open and wait for their threads."""
        for frontend in (self._frontend, self._tls_frontend):
            if frontend is not None:
                frontend.stop(JOIN_TIMEOUT_S)
        self._frontend = self._tls_frontend = None
        tls_server, self._tls_server = self._tls_server, None
        if tls_server is not None:
            tls_server.shutdown()
            for assoc in list(tls_server.active_associations):
                if assoc.is_alive():
                    assoc.abort()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # no new associations from here on
        active = list(server.active_associations)
        for assoc in active:
            if assoc.is_alive():
                assoc.abort()
        for assoc in active:
            assoc.join(JOIN_TIMEOUT_S)
        log.info("receiver_stopped", **self._snapshot())

    def status(self) -> ReceiverStatus:
        server = self._server
        frontend = self._frontend
        counts = self._snapshot()
        active = len(server.active_associations) if server else 0
        return ReceiverStatus(
            listening=server is not None
            and (frontend is not None or self.settings.dicom_frontend != "native"),
            host=self.settings.dicom_host,
            port=self.settings.dicom_port,
            ae_title=self.settings.dicom_ae_title,
            error=self._error,
            associations=counts["associations"],
            active_associations=active
            + (frontend.active if frontend else 0)
            + (self._tls_frontend.active if self._tls_frontend else 0),
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
        """The requestor's IP; for an association relayed by the front end, the real client's."""
        ip = str(assoc.requestor.address or "")
        if ip == "127.0.0.1":
            for frontend in (self._frontend, self._tls_frontend):
                relayed = frontend.relayed.get(int(assoc.requestor.port or 0)) if frontend else None
                if relayed is not None:
                    return relayed[0]
        return ip

    def _peer_refusal(self, event: evt.Event, action: str) -> bool:
        """True (and audited) when the requestor is not a configured peer: query/retrieve is
        only for ``RADIANT_DICOM_PEERS`` (calling AE title and address)."""
        assoc = event.assoc
        if (_calling_ae(assoc), self._client_ip(assoc)) not in self._peers:
            reason = "not a configured peer"
        elif self.settings.dicom_tls_verify_clients == "peers" and _tls_without_cert(assoc):
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
        log.warning("store_quarantined", quarantine_id=result.quarantine_id)
        if result.mismatch:
            return DATASET_MISMATCH, (result.reason or "the data set does not match")[:64]
        return QUARANTINED, f"quarantined: {result.reason or 'invalid instance'}"

    # -- association events (PS3.8) -------------------------------------------------------------

    def _on_conn_open(self, event: evt.Event) -> None:
        _nodelay(event.assoc)

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
            _prefer_receivers_syntaxes(assoc)
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
            return _status(STORE_FAILED, "the receiver could not store it; retry later")
        code, comment = self.store(data, _calling_ae(assoc), self._client_ip(assoc))
        return _status(code, comment) if comment else code

    # -- Query/Retrieve (PS3.4 Annex C) ---------------------------------------------------------

    def _identifier(self, event: evt.Event, parse: Callable[[Dataset], Query]) -> Query:
        try:
            identifier = event.identifier
        except Exception:
            raise QueryError(UNABLE_TO_PROCESS, "the Identifier cannot be decoded") from None
        return parse(identifier)

    def _on_find(self, event: evt.Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """C-FIND (C.4.1): one pending response per match, then success."""
        if self._peer_refusal(event, "dicom.find"):
            yield _status(NOT_AUTHORIZED, "query/retrieve is for configured peers only"), None
            return
        try:
            query = self._identifier(event, parse_identifier)
        except QueryError as exc:
            log.warning("find_refused", status=f"0x{exc.status:04X}", reason=exc.comment)
            yield _status(exc.status, exc.comment), None
            return
        db = self.ctx.pool.get()
        matches = list(find(db, query, retrieve_ae=self.settings.dicom_ae_title))
        audit.record(
            db,
            self._actor(event.assoc),
            "dicom.find",
            detail={"level": query.level.name, "matches": len(matches)},
        )
        for identifier in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, identifier

    def _on_get(self, event: evt.Event) -> Iterator[Any]:
        """C-GET (C.4.3): C-STORE sub-operations over the requesting association."""
        if self._peer_refusal(event, "dicom.get"):
            yield 1
            yield (
                _status(NOT_AUTHORIZED, "query/retrieve is for configured peers only"),
                _failed_list([]),
            )
            return
        try:
            query = self._identifier(event, retrieve_query)
        except QueryError as exc:
            log.warning("get_refused", status=f"0x{exc.status:04X}", reason=exc.comment)
            yield 1
            yield _status(exc.status, exc.comment), _failed_list([])
            return
        db = self.ctx.pool.get()
        matches = instances(db, query)
        self._audit_retrieve(event.assoc, "dicom.get", query, matches, None)
        yield len(matches)
        if matches:
            yield from self._suboperations(event, event.assoc, matches)

    def _on_move(self, event: evt.Event) -> Iterator[Any]:
        """C-MOVE (C.4.2): C-STORE sub-operations over a new association to a known peer."""
        if self._peer_refusal(event, "dicom.move"):
            yield None, None  # refused before any sub-association (answered 0xA801)
            return
        destination = (event.move_destination or "").strip()
        peer = self.settings.peers.get(destination)
        if peer is None:
            log.warning("move_refused", destination=destination, reason="unknown destination")
            self._audit(
                event.assoc,
                "dicom.move",
                "refused",
                {"destination": destination, "reason": "unknown move destination"},
            )
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        try:
            query = self._identifier(event, retrieve_query)
        except QueryError as exc:
            log.warning("move_refused", status=f"0x{exc.status:04X}", reason=exc.comment)
            yield peer.host, peer.port, {"contexts": [build_context(Verification)]}
            yield 1
            yield _status(exc.status, exc.comment), _failed_list([])
            return
        db = self.ctx.pool.get()
        matches = instances(db, query)
        self._audit_retrieve(event.assoc, "dicom.move", query, matches, destination)
        opened: list[Association] = []
        established = threading.Event()

        def on_established(sub: evt.Event) -> None:
            _nodelay(sub.assoc)
            _SenderTakesEveryMessage.install(sub.assoc)
            opened.append(sub.assoc)
            established.set()

        contexts = _contexts_for(matches)
        yield (
            peer.host,
            peer.port,
            {
                "contexts": contexts,
                "evt_handlers": [(evt.EVT_ESTABLISHED, on_established)],
            },
        )
        yield len(matches)
        # pynetdicom resumes here once the sub-association is established, but the
        # EVT_ESTABLISHED handler runs in that association's thread and may not have run yet
        # (seen under load): wait for it rather than skip the sub-operations.
        if matches and established.wait(SUBASSOCIATION_WAIT_S):
            yield from self._suboperations(event, opened[0], matches)
        elif matches:
            log.error("move_subassociation_unseen", destination=destination)
            yield (
                _status(SUBOPERATIONS_FAILED, "no association to the destination"),
                (_failed_list([m.sop_instance_uid for m in matches])),
            )

    def _suboperations(
        self, event: evt.Event, store_assoc: Association, matches: list[StoredInstance]
    ) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """Pending yields for the sendable instances, then a final status for the rest."""
        sender = _StoredFileSender.attach(store_assoc)
        sender.begin()
        not_accepted: list[str] = []
        missing: list[str] = []
        for item in matches:
            if event.is_cancelled:
                yield CANCEL, _failed_list(sender.failed + not_accepted + missing)
                return
            if not _can_send(store_assoc, item):
                not_accepted.append(item.sop_instance_uid)
                continue
            path = self.ctx.store.path(item.storage_key)
            if not path.is_file():
                log.error("retrieve_file_missing", storage_key=item.storage_key)
                missing.append(item.sop_instance_uid)
                continue
            sender.paths[item.sop_instance_uid] = path
            announce = Dataset()
            announce.SOPClassUID = item.sop_class_uid
            announce.SOPInstanceUID = item.sop_instance_uid
            yield PENDING, announce
        log.info(
            "retrieve_done",
            sent=sender.completed,
            failed=len(sender.failed),
            not_accepted=len(not_accepted),
            missing=len(missing),
        )
        if not_accepted or missing:
            code = SUBOPERATIONS_WARNING if sender.completed else SUBOPERATIONS_FAILED
            comment = (
                f"{len(not_accepted)} not sent: transfer syntax not accepted"
                if not_accepted
                else f"{len(missing)} not sent: stored file missing"
            )
            yield _status(code, comment), _failed_list(sender.failed + not_accepted + missing)

    def _audit_retrieve(
        self,
        assoc: Association,
        action: str,
        query: Query,
        matches: list[StoredInstance],
        destination: str | None,
    ) -> None:
        detail: dict[str, Any] = {
            "level": query.level.name,
            "studies": len({m.study_uid for m in matches}),
            "series": len({m.series_uid for m in matches}),
            "instances": len(matches),
        }
        if destination is not None:
            detail["destination"] = destination
        self._audit(assoc, action, "success", detail)

    def _audit(self, assoc: Association, action: str, outcome: str, detail: dict[str, Any]) -> None:
        audit.record(
            self.ctx.pool.get(), self._actor(assoc), action, outcome=outcome, detail=detail
        )


def _prefer_receivers_syntaxes(assoc: Association) -> None:
    """For a SOP class the requestor proposes to take the SCP role for (it will receive, as in
    C-GET), accept the transfer syntax it lists first rather than ours.

    PS3.8 9.3.2.2 leaves the choice among proposed syntaxes to the acceptor. For storage sent
    to us our order holds (uncompressed first: a sender never has to compress). For instances
    we send, the receiver's order says what it can take; since stored files are sent as they
    are (never transcoded), its first choice is what makes its compressed files retrievable.
    """
    receiving = {str(uid) for uid, item in assoc.requestor.role_selection.items() if item.scp_role}
    if not receiving:
        return
    preferred: dict[str, list[str]] = {}
    for cx in assoc.requestor.requested_contexts:
        if str(cx.abstract_syntax) in receiving:
            order = preferred.setdefault(str(cx.abstract_syntax), [])
            order.extend(str(ts) for ts in cx.transfer_syntax if str(ts) not in order)
    contexts = []
    for cx in assoc.acceptor.supported_contexts:
        order = preferred.get(str(cx.abstract_syntax), [])
        ours = [str(ts) for ts in cx.transfer_syntax]
        if order:
            ranked = [ts for ts in order if ts in ours] + [ts for ts in ours if ts not in order]
            replacement = build_context(str(cx.abstract_syntax), ranked)
            replacement.scu_role, replacement.scp_role = cx.scu_role, cx.scp_role
            cx = replacement
        contexts.append(cx)
    assoc.acceptor.supported_contexts = contexts


def _contexts_for(matches: list[StoredInstance]) -> list[PresentationContext]:
    """One context per (SOP class, transfer syntax) among the matches, proposing exactly the
    stored transfer syntax, at most :data:`MAX_CONTEXTS` (the others then fail, not transcode)."""
    pairs = dict.fromkeys(
        (m.sop_class_uid, m.transfer_syntax_uid) for m in matches if m.transfer_syntax_uid
    )
    contexts = [build_context(sop_class, [syntax]) for sop_class, syntax in pairs]
    return contexts[:MAX_CONTEXTS] or [build_context(Verification)]
