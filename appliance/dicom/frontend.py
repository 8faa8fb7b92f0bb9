"""The receiver's native network front end: a DICOM Upper Layer acceptor (PS3.8) for storage.

It listens on ``RADIANT_DICOM_PORT`` and serves associations whose presentation contexts are
all Storage or Verification itself: C-ECHO and C-STORE (PS3.7 9.1.1, 9.1.5), answering each
C-STORE only after :meth:`Services.store` returned, i.e. after the instance is durable or
refused. Any association that also proposes a SOP class the front end does not serve (Query/
Retrieve: C-FIND, C-GET, C-MOVE) or an SCP/SCU role selection or extended negotiation item is
relayed byte for byte to the pynetdicom AE listening on an internal 127.0.0.1 port: the
A-ASSOCIATE-RQ already read is replayed, then both directions are piped until either side
closes. Who may associate is decided here, in front, for both kinds: the calling and called AE
titles (PS3.5 characters; the called one must be ours), the allow-lists, and query/retrieve only
for a configured peer (calling AE title and address; over TLS with ``peers`` client checking, a
verified client certificate too). An association from anyone else that proposes query/retrieve
has those contexts refused (or is rejected when it proposes nothing else), and is audited.

One thread per TCP connection, blocking sockets: a C-STORE is received, ingested and answered
on the same thread with no hand-over, which is what keeps the round trip of a synchronous
sender (one outstanding operation, as negotiated) short. The ingest runs on that thread, never
on the accepting one. Timers are deadlines kept by :class:`appliance.dicom.gate.Gate` (ARTIM,
PS3.8 9.1.5, from accept to a complete A-ASSOCIATE-RQ, TLS handshake included; then the idle
timeout for each whole PDU); the gate also limits established associations and pending
connections. A protocol error sends A-ABORT and closes. With an SSLContext the listener is the
DICOM TLS one (PS3.15 B.1); what it serves is the same.

A data set's fragments are spooled (:mod:`appliance.dicom.spool`): a few MiB in memory, then a
temporary file in the data dir; one larger than the maximum object size is dropped as it
arrives and answered 0xA700 (refused, out of resources) with the refusal audited.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from appliance.config import valid_ae_title
from appliance.dicom import ul
from appliance.dicom.gate import Connection, Gate, shut
from appliance.dicom.spool import MEMORY_LIMIT, Spool
from appliance.logs import get_logger

log = get_logger("radiant.receiver.frontend")

VERIFICATION = "1.2.840.10008.1.1"
# Implicit VR LE first: the one every SCU proposes for Verification
VERIFICATION_SYNTAXES = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
)
IMPLEMENTATION_UID = "2.25.178255651463905129740960052213391427457"
IMPLEMENTATION_VERSION = "RADIANT_UL_1"
ARTIM_S = 10.0  # accept to a whole A-ASSOCIATE-RQ; the peer closing after RJ or RP (PS3.8 9.1.5)
IDLE_S = 60.0  # an established association's next PDU must have arrived whole by then
MAX_RQ_LENGTH = 1 << 20  # an A-ASSOCIATE-RQ this long is not a real one
MAX_COMMAND_LENGTH = 1 << 16  # a command set is a few hundred bytes (PS3.7 9.3)
MAX_ASSOCIATIONS = 25
MAX_PENDING = 100
MAX_PENDING_PER_IP = 10
MAX_OBJECT_BYTES = 4 << 30
RELAY_CHUNK = 1 << 16
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122  # Refused: SOP Class not supported (PS3.7 Annex C)
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (PS3.4 B.2.3)
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


class _Closed(Exception):
    """The peer closed the connection."""


class _Abort(Exception):
    """Stop the association with an A-ABORT (provider, ``reason``)."""

    def __init__(self, message: str, reason: int = ul.ABORT_NOT_SPECIFIED) -> None:
        super().__init__(message)
        self.reason = reason


def _recv_exact(
    sock: socket.socket, length: int, gate: Gate | None = None, conn: Connection | None = None
) -> bytearray:
    """``length`` bytes; with ``conn``, by its deadline (each read's timeout is what is left)."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    while got < length:
        if gate is not None and conn is not None:
            if conn.expired:
                raise TimeoutError
            left = gate.remaining(conn)
            sock.settimeout(None if math.isinf(left) else left)
        n = sock.recv_into(view[got:], length - got)
        if n == 0:
            if conn is not None and conn.expired:
                raise TimeoutError  # shut down by the gate at its deadline
            raise _Closed
        got += n
    return buffer


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


@dataclass
class _Association:
    """One accepted association's negotiated state and DIMSE reassembly buffers."""

    rq: ul.AssociateRQ
    ip: str
    contexts: dict[int, tuple[str, str]]  # id -> (abstract syntax, transfer syntax)
    peer_max_pdu: int
    command_parts: list[memoryview] = field(default_factory=list)
    command: ul.Command | None = None
    command_context: int = 0
    data: Spool | None = None


class Frontend:
    """The listening socket and its connection threads; :meth:`start` binds, :meth:`stop` ends."""

    def __init__(
        self,
        host: str,
        port: int,
        policy: Policy,
        services: Services,
        relay_to: Callable[[], int | None],
        *,
        ssl_context: ssl.SSLContext | None = None,
        client_cert_for_qr: bool = False,
        gate: Gate | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.policy = policy
        self.services = services
        self._relay_to = relay_to
        self.ssl_context = ssl_context
        # over TLS, query/retrieve also needs a verified client certificate (``peers`` mode)
        self.client_cert_for_qr = client_cert_for_qr
        self.gate = gate if gate is not None else policy.gate()
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[Connection, threading.Thread] = {}
        self._native = 0
        # local port of a relay connection -> the real client (ip, port), for the internal AE
        self.relayed: dict[int, tuple[str, int]] = {}

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and listen (raises OSError), then accept on a daemon thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.gate.open()
        self._accepter = threading.Thread(
            target=self._accept_loop, name="dicom-accept", daemon=True
        )
        self._accepter.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, abort open associations, wait for their threads."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accepter is not None:
            self._accepter.join(timeout)
            self._accepter = None
            self.gate.close()
        with self._lock:
            connections = list(self._connections.items())
        for conn, _thread in connections:
            shut(conn.sock)
        for _conn, thread in connections:
            thread.join(timeout)

    @property
    def listening(self) -> bool:
        return self._listener is not None

    @property
    def active(self) -> int:
        """Associations served natively right now."""
        with self._lock:
            return self._native

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and self._listener is listener:
            try:
                sock, address = listener.accept()
            except OSError:
                return  # closed by stop()
            ip = str(address[0])
            conn = self.gate.admit(sock, ip)
            if conn is None:  # too many pending connections from this address
                sock.close()
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="dicom-assoc", daemon=True
            )
            with self._lock:
                self._connections[conn] = thread
            thread.start()

    # -- one connection -----------------------------------------------------------------------

    def _serve(self, conn: Connection) -> None:
        try:
            self._serve_connection(conn)
        except Exception as exc:  # never let a connection take the receiver down
            log.error("association_failed", error=exc.__class__.__name__)
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()
            self.gate.release(conn)
            with self._lock:
                self._connections.pop(conn, None)

    def _handshake(self, conn: Connection) -> bool:
        """TLS server handshake within the ARTIM deadline (PS3.15 B.1)."""
        assert self.ssl_context is not None
        try:
            tls = self.ssl_context.wrap_socket(
                conn.sock, server_side=True, do_handshake_on_connect=False
            )
        except (OSError, ValueError):
            return False
        conn.sock = tls
        try:
            tls.settimeout(self.gate.remaining(conn))
            tls.do_handshake()
        except (OSError, ValueError) as exc:
            log.warning("tls_handshake_failed", error=exc.__class__.__name__)
            return False
        return not conn.expired

    def _serve_connection(self, conn: Connection) -> None:
        ip = conn.ip
        if self.ssl_context is not None and not self._handshake(conn):
            return
        sock = conn.sock
        try:
            header = _recv_exact(sock, ul.PDU_HEADER, self.gate, conn)
            kind, length = ul.parse_header(header)
            if kind != ul.A_ASSOCIATE_RQ or length > MAX_RQ_LENGTH:
                reason = (
                    ul.ABORT_UNEXPECTED_PDU if kind in ul.PDU_TYPES else ul.ABORT_UNRECOGNIZED_PDU
                )
                if kind == ul.A_ASSOCIATE_RQ:
                    reason = ul.ABORT_INVALID_PDU_PARAMETER
                self._abort(sock, reason)
                return
            body = _recv_exact(sock, length, self.gate, conn)
        except (_Closed, OSError):
            return  # timed out or gone before asking for anything
        try:
            rq = ul.decode_associate_rq(body)
        except ul.ProtocolError as exc:
            log.warning("association_malformed", error=str(exc))
            self._abort(sock, exc.reason)
            return
        refusal = self._refusal(rq, ip)
        if refusal is None and not self.gate.establish(conn):
            refusal = "too many associations at once", REJECT_BUSY
        if refusal is not None:
            why, (result, source, diagnostic) = refusal
            self.services.refuse(printable_ae(rq.calling_ae), ip, why)
            self._reject(conn, result, source, diagnostic)
            return
        query_retrieve = proposes_query_retrieve(rq, self.policy)
        if query_retrieve:
            why_not = self._not_a_peer(conn, rq)
            if why_not is not None:
                self.services.refuse(rq.calling_ae, ip, f"query/retrieve refused: {why_not}")
                if not any(
                    r.result == ul.ACCEPTANCE for r in negotiate(rq, self.policy)
                ):  # nothing else to serve
                    self._reject(conn, *REJECT_CALLING_AE)
                    return
                self._serve_native(conn, rq)
                return
        if wants_relay(rq, self.policy):
            self._relay(conn, bytes(header) + bytes(body))
            return
        self._serve_native(conn, rq)

    def _is_peer(self, rq: ul.AssociateRQ, ip: str) -> bool:
        return (rq.calling_ae, ip) in self.policy.peers

    def _not_a_peer(self, conn: Connection, rq: ul.AssociateRQ) -> str | None:
        """Why this association may not query or retrieve (None: it may)."""
        if not self._is_peer(rq, conn.ip):
            known = any(ae == rq.calling_ae for ae, _ in self.policy.peers)
            return "address does not match the peer" if known else "not a configured peer"
        sock = conn.sock
        if self.client_cert_for_qr and isinstance(sock, ssl.SSLSocket) and not sock.getpeercert():
            return "no verified client certificate"
        return None

    def _refusal(self, rq: ul.AssociateRQ, ip: str) -> tuple[str, tuple[int, int, int]] | None:
        policy = self.policy
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
        if policy.store_peers_only and not self._is_peer(rq, ip):
            return "storage only from configured peers", REJECT_CALLING_AE
        if rq.application_context != ul.APPLICATION_CONTEXT:
            return "application context not supported", REJECT_CONTEXT_NAME
        return None

    def _reject(self, conn: Connection, result: int, source: int, reason: int) -> None:
        """Send A-ASSOCIATE-RJ, then wait (ARTIM) for the requestor to close (PS3.8 9.2 AA-8)."""
        sock = conn.sock
        self.gate.set_deadline(conn, self.policy.artim_s)
        with contextlib.suppress(OSError):
            sock.sendall(ul.encode_associate_rj(result, source, reason))
            if not isinstance(sock, ssl.SSLSocket):
                sock.shutdown(socket.SHUT_WR)
            sock.settimeout(self.policy.artim_s)
            while sock.recv(4096):
                pass

    def _abort(self, sock: socket.socket, reason: int) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(ul.encode_abort(ul.ABORT_SOURCE_PROVIDER, reason))

    # -- relay to the internal pynetdicom AE --------------------------------------------------

    def _relay(self, conn: Connection, rq_bytes: bytes) -> None:
        port = self._relay_to()
        if port is None:
            self._reject(conn, *REJECT_BUSY)
            return
        try:
            inner = socket.create_connection(("127.0.0.1", port), timeout=self.policy.artim_s)
        except OSError as exc:
            log.error("relay_connect_failed", error=exc.strerror or exc.__class__.__name__)
            self._reject(conn, *REJECT_BUSY)
            return
        client = conn.sock
        inner.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local_port = int(inner.getsockname()[1])
        client_port = 0
        with contextlib.suppress(OSError):
            client_port = int(client.getpeername()[1])
        self.relayed[local_port] = (conn.ip, client_port)
        try:
            inner.sendall(rq_bytes)
            self._pipe_both(conn, inner)
        except OSError:
            pass
        finally:
            self.relayed.pop(local_port, None)
            shut(client)
            inner.close()

    def _pipe_both(self, conn: Connection, inner: socket.socket) -> None:
        """Copy bytes both ways on this one thread (an SSLSocket must not be read and written
        from two threads) until either side closes or nothing moved for the idle timeout."""
        client = conn.sock
        buffer = bytearray(RELAY_CHUNK)
        view = memoryview(buffer)
        other = {client: inner, inner: client}
        for sock in other:
            sock.settimeout(self.policy.idle_s)
        self.gate.set_deadline(conn, self.policy.idle_s)
        while not conn.expired:
            ready: list[socket.socket] = (
                [client] if isinstance(client, ssl.SSLSocket) and client.pending() else []
            )
            if not ready:
                ready, _, _ = select.select([client, inner], [], [], 1.0)
            for source in ready:
                n = source.recv_into(buffer)
                if n == 0:
                    return
                other[source].sendall(view[:n])
                self.gate.set_deadline(conn, self.policy.idle_s)

    # -- native associations ------------------------------------------------------------------

    def _serve_native(self, conn: Connection, rq: ul.AssociateRQ) -> None:
        policy = self.policy
        sock, ip = conn.sock, conn.ip
        results = negotiate(rq, policy)
        contexts = {
            r.context_id: (cx.abstract_syntax, r.transfer_syntax)
            for r, cx in zip(results, rq.contexts, strict=True)
            if r.result == ul.ACCEPTANCE
        }
        ac = ul.encode_associate_ac(
            rq,
            results,
            max_pdu=policy.max_pdu,
            implementation_uid=IMPLEMENTATION_UID,
            implementation_version=IMPLEMENTATION_VERSION,
        )
        assoc = _Association(rq, ip, contexts, rq.max_pdu)
        try:
            sock.sendall(ac)
        except OSError:
            return
        self.services.established(rq.calling_ae, ip)
        with self._lock:
            self._native += 1
        try:
            self._established(conn, assoc)
        finally:
            if assoc.data is not None:
                assoc.data.discard()
            with self._lock:
                self._native -= 1
            self.services.ended()

    def _established(self, conn: Connection, assoc: _Association) -> None:
        sock, gate = conn.sock, self.gate
        while True:
            try:
                # the whole next PDU by the idle deadline; none while a request is worked on
                gate.set_deadline(conn, self.policy.idle_s)
                kind, length = ul.parse_header(_recv_exact(sock, ul.PDU_HEADER, gate, conn))
                if kind not in ul.PDU_TYPES:
                    raise _Abort(f"unknown PDU type 0x{kind:02X}", ul.ABORT_UNRECOGNIZED_PDU)
                if length > self.policy.max_pdu + ul.PDU_HEADER or (
                    kind != ul.P_DATA_TF and length > 64
                ):
                    raise _Abort(
                        f"PDU 0x{kind:02X} of {length} bytes", ul.ABORT_INVALID_PDU_PARAMETER
                    )
                body = _recv_exact(sock, length, gate, conn)
                gate.set_deadline(conn, None)
                sock.settimeout(self.policy.idle_s)  # for sending
                if kind == ul.P_DATA_TF:
                    self._p_data(sock, assoc, body)
                elif kind == ul.A_RELEASE_RQ:
                    sock.sendall(ul.encode_release_rp())
                    gate.set_deadline(conn, self.policy.artim_s)
                    with contextlib.suppress(OSError):
                        sock.settimeout(self.policy.artim_s)
                        while sock.recv(4096):
                            pass
                    return
                elif kind == ul.A_ABORT:
                    return
                else:
                    raise _Abort(f"PDU 0x{kind:02X} in an established association",
                                 ul.ABORT_UNEXPECTED_PDU)  # fmt: skip
            except (_Closed, ConnectionError):
                return
            except TimeoutError:
                self._abort(sock, ul.ABORT_NOT_SPECIFIED)
                return
            except OSError:  # shut down at its deadline, or by stop()
                return
            except ul.ProtocolError as exc:
                log.warning("association_aborted", error=str(exc))
                self._abort(sock, exc.reason)
                return
            except _Abort as exc:
                log.warning("association_aborted", error=str(exc))
                self._abort(sock, exc.reason)
                return

    def _p_data(self, sock: socket.socket, assoc: _Association, body: bytearray) -> None:
        for pdv in ul.decode_p_data(body):
            if pdv.context_id not in assoc.contexts:
                raise _Abort(f"PDV on context {pdv.context_id}, not accepted",
                             ul.ABORT_INVALID_PDU_PARAMETER)  # fmt: skip
            if pdv.is_command:
                if assoc.command is not None:
                    raise _Abort("a command arrived before the data set of the previous one",
                                 ul.ABORT_UNEXPECTED_PDU_PARAMETER)  # fmt: skip
                if assoc.command_parts and pdv.context_id != assoc.command_context:
                    raise _Abort("command fragments on different contexts")
                assoc.command_context = pdv.context_id
                assoc.command_parts.append(pdv.data)
                if sum(len(part) for part in assoc.command_parts) > MAX_COMMAND_LENGTH:
                    raise _Abort("a command set longer than any real one",
                                 ul.ABORT_INVALID_PDU_PARAMETER)  # fmt: skip
                if pdv.is_last:
                    raw = b"".join(assoc.command_parts)
                    assoc.command_parts = []
                    command = ul.decode_command(raw)
                    if command.has_data_set:
                        assoc.command = command
                        assoc.data = Spool(
                            self.policy.spool_dir,
                            self.policy.max_object_bytes,
                            self.policy.spool_memory,
                        )
                    else:
                        self._dispatch(sock, assoc, command, None)
            else:
                if assoc.command is None or pdv.context_id != assoc.command_context:
                    raise _Abort(
                        "a data set without its command", ul.ABORT_UNEXPECTED_PDU_PARAMETER
                    )
                spool = assoc.data
                assert spool is not None  # set with the command
                spool.write(pdv.data)
                if spool.size > 2 * spool.max_bytes + (1 << 20):
                    # dropped as it came, but a peer that never ends it would hold the slot
                    raise _Abort("a data set far beyond the maximum object size")
                if pdv.is_last:
                    command, assoc.command = assoc.command, None
                    assoc.data = None
                    self._dispatch(sock, assoc, command, spool)

    def _dispatch(
        self,
        sock: socket.socket,
        assoc: _Association,
        command: ul.Command,
        data: Spool | None,
    ) -> None:
        abstract, syntax = assoc.contexts[assoc.command_context]
        if command.command_field == ul.C_ECHO_RQ:
            response = ul.echo_response(command, SUCCESS)
        elif command.command_field == ul.C_STORE_RQ and data is not None:
            if abstract != command.affected_sop_class or abstract == VERIFICATION:
                status: int = SOP_CLASS_NOT_SUPPORTED
                comment: str | None = "the SOP class does not match the presentation context"
                data.discard()
            elif data.too_large:
                status, comment = OUT_OF_RESOURCES, "larger than the maximum object size"
                log.warning("store_refused_too_large", size=data.size, limit=data.max_bytes)
                self.services.refuse(
                    assoc.rq.calling_ae,
                    assoc.ip,
                    f"data set of {data.size} bytes, above the maximum of {data.max_bytes}",
                )
            else:
                meta = ul.file_meta(
                    command.affected_sop_class,
                    command.affected_sop_instance,
                    syntax,
                    IMPLEMENTATION_UID,
                    IMPLEMENTATION_VERSION,
                )
                status, comment = self.services.store(
                    data.read(meta), assoc.rq.calling_ae, assoc.ip
                )
            response = ul.store_response(command, status, comment)
        else:
            raise _Abort(f"DIMSE command 0x{command.command_field:04X} is not served here")
        for part in ul.encode_p_data(assoc.command_context, True, response, assoc.peer_max_pdu):
            sock.sendall(part)
