"""The receiver's native network front end: a DICOM Upper Layer acceptor (PS3.8) for storage.

It listens on ``RADIANT_DICOM_PORT`` and serves associations whose presentation contexts are
all Storage or Verification itself: C-ECHO and C-STORE (PS3.7 9.1.1, 9.1.5), answering each
C-STORE only after :meth:`Services.store` returned, i.e. after the instance is durable or
refused. Any association that also proposes a SOP class the front end does not serve (Query/
Retrieve: C-FIND, C-GET, C-MOVE) or an SCP/SCU role selection or extended negotiation item is
relayed byte for byte to the pynetdicom AE listening on an internal 127.0.0.1 port: the
A-ASSOCIATE-RQ already read is replayed, then both directions are piped until either side
closes. The calling AE title and IP allow-lists are checked here, in front, for both kinds.

One thread per TCP connection, blocking sockets: a C-STORE is received, ingested and answered
on the same thread with no hand-over, which is what keeps the round trip of a synchronous
sender (one outstanding operation, as negotiated) short. The ingest runs on that thread, never
on the accepting one. Timers (PS3.8 9.1.5 ARTIM and the idle network timeout) are socket
timeouts; a timeout or a protocol error sends A-ABORT and closes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from appliance.dicom import ul
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
ARTIM_S = 30.0  # awaiting A-ASSOCIATE-RQ / the peer closing after RJ or RP (PS3.8 9.1.5)
IDLE_S = 60.0  # an established association silent this long is aborted
MAX_RQ_LENGTH = 1 << 20  # an A-ASSOCIATE-RQ this long is not a real one
MAX_ASSOCIATIONS = 10
RELAY_CHUNK = 1 << 16
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122  # Refused: SOP Class not supported (PS3.7 Annex C)
# A-ASSOCIATE-RJ (result, source, reason), PS3.8 9.3.4
REJECT_IP = (1, 1, 1)
REJECT_CALLING_AE = (1, 1, 3)
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


class _Closed(Exception):
    """The peer closed the connection."""


class _Abort(Exception):
    """Stop the association with an A-ABORT (provider, ``reason``)."""

    def __init__(self, message: str, reason: int = ul.ABORT_NOT_SPECIFIED) -> None:
        super().__init__(message)
        self.reason = reason


def _recv_exact(sock: socket.socket, length: int) -> bytearray:
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    while got < length:
        n = sock.recv_into(view[got:], length - got)
        if n == 0:
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
    data_parts: list[memoryview] = field(default_factory=list)


class Frontend:
    """The listening socket and its connection threads; :meth:`start` binds, :meth:`stop` ends."""

    def __init__(
        self,
        host: str,
        port: int,
        policy: Policy,
        services: Services,
        relay_to: Callable[[], int | None],
    ) -> None:
        self.host = host
        self.port = port
        self.policy = policy
        self.services = services
        self._relay_to = relay_to
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
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
        with self._lock:
            connections = list(self._connections.items())
        for sock, _thread in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _sock, thread in connections:
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
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._serve, args=(sock, str(address[0])), name="dicom-assoc", daemon=True
            )
            with self._lock:
                self._connections[sock] = thread
            thread.start()

    # -- one connection -----------------------------------------------------------------------

    def _serve(self, sock: socket.socket, ip: str) -> None:
        try:
            self._serve_connection(sock, ip)
        except Exception as exc:  # never let a connection take the receiver down
            log.error("association_failed", error=exc.__class__.__name__)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._connections.pop(sock, None)

    def _serve_connection(self, sock: socket.socket, ip: str) -> None:
        sock.settimeout(self.policy.artim_s)
        try:
            header = _recv_exact(sock, ul.PDU_HEADER)
            kind, length = ul.parse_header(header)
            if kind != ul.A_ASSOCIATE_RQ or length > MAX_RQ_LENGTH:
                reason = (
                    ul.ABORT_UNEXPECTED_PDU if kind in ul.PDU_TYPES else ul.ABORT_UNRECOGNIZED_PDU
                )
                if kind == ul.A_ASSOCIATE_RQ:
                    reason = ul.ABORT_INVALID_PDU_PARAMETER
                self._abort(sock, reason)
                return
            body = _recv_exact(sock, length)
        except (_Closed, OSError):
            return  # timed out or gone before asking for anything
        try:
            rq = ul.decode_associate_rq(body)
        except ul.ProtocolError as exc:
            log.warning("association_malformed", error=str(exc))
            self._abort(sock, exc.reason)
            return
        refusal = self._refusal(rq, ip)
        if refusal is not None:
            why, (result, source, diagnostic) = refusal
            self.services.refuse(rq.calling_ae, ip, why)
            self._reject(sock, result, source, diagnostic)
            return
        if wants_relay(rq, self.policy):
            self._relay(sock, ip, bytes(header) + bytes(body), rq)
            return
        self._serve_native(sock, ip, rq)

    def _refusal(self, rq: ul.AssociateRQ, ip: str) -> tuple[str, tuple[int, int, int]] | None:
        policy = self.policy
        if not rq.protocol_version & 1:
            return "protocol version not supported", REJECT_PROTOCOL_VERSION
        if policy.allowed_ips and ip not in policy.allowed_ips:
            return "calling IP address not allowed", REJECT_IP
        if policy.allowed_aets and rq.calling_ae not in policy.allowed_aets:
            return "calling AE title not allowed", REJECT_CALLING_AE
        if rq.application_context != ul.APPLICATION_CONTEXT:
            return "application context not supported", REJECT_CONTEXT_NAME
        with self._lock:
            busy = len(self._connections) > policy.max_associations
        if busy:
            return "too many associations at once", REJECT_BUSY
        return None

    def _reject(self, sock: socket.socket, result: int, source: int, reason: int) -> None:
        """Send A-ASSOCIATE-RJ, then wait (ARTIM) for the requestor to close (PS3.8 9.2 AA-8)."""
        with contextlib.suppress(OSError):
            sock.sendall(ul.encode_associate_rj(result, source, reason))
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass

    def _abort(self, sock: socket.socket, reason: int) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(ul.encode_abort(ul.ABORT_SOURCE_PROVIDER, reason))

    # -- relay to the internal pynetdicom AE --------------------------------------------------

    def _relay(self, client: socket.socket, ip: str, rq_bytes: bytes, rq: ul.AssociateRQ) -> None:
        port = self._relay_to()
        if port is None:
            self._reject(client, *REJECT_BUSY)
            return
        try:
            inner = socket.create_connection(("127.0.0.1", port), timeout=self.policy.artim_s)
        except OSError as exc:
            log.error("relay_connect_failed", error=exc.strerror or exc.__class__.__name__)
            self._reject(client, *REJECT_BUSY)
            return
        inner.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local_port = int(inner.getsockname()[1])
        client_port = 0
        with contextlib.suppress(OSError):
            client_port = int(client.getpeername()[1])
        self.relayed[local_port] = (ip, client_port)
        try:
            inner.settimeout(None)
            client.settimeout(None)
            inner.sendall(rq_bytes)
            back = threading.Thread(
                target=_pipe, args=(inner, client), name="dicom-relay", daemon=True
            )
            back.start()
            _pipe(client, inner)
            back.join()
        finally:
            self.relayed.pop(local_port, None)
            inner.close()

    # -- native associations ------------------------------------------------------------------

    def _serve_native(self, sock: socket.socket, ip: str, rq: ul.AssociateRQ) -> None:
        policy = self.policy
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
            self._established(sock, assoc)
        finally:
            with self._lock:
                self._native -= 1
            self.services.ended()

    def _established(self, sock: socket.socket, assoc: _Association) -> None:
        sock.settimeout(self.policy.idle_s)
        while True:
            try:
                kind, length = ul.parse_header(_recv_exact(sock, ul.PDU_HEADER))
                if kind not in ul.PDU_TYPES:
                    raise _Abort(f"unknown PDU type 0x{kind:02X}", ul.ABORT_UNRECOGNIZED_PDU)
                if length > self.policy.max_pdu + ul.PDU_HEADER or (
                    kind != ul.P_DATA_TF and length > 64
                ):
                    raise _Abort(
                        f"PDU 0x{kind:02X} of {length} bytes", ul.ABORT_INVALID_PDU_PARAMETER
                    )
                body = _recv_exact(sock, length)
                if kind == ul.P_DATA_TF:
                    self._p_data(sock, assoc, body)
                elif kind == ul.A_RELEASE_RQ:
                    sock.sendall(ul.encode_release_rp())
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
                if pdv.is_last:
                    raw = b"".join(assoc.command_parts)
                    assoc.command_parts = []
                    command = ul.decode_command(raw)
                    if command.has_data_set:
                        assoc.command = command
                    else:
                        self._dispatch(sock, assoc, command, None)
            else:
                if assoc.command is None or pdv.context_id != assoc.command_context:
                    raise _Abort(
                        "a data set without its command", ul.ABORT_UNEXPECTED_PDU_PARAMETER
                    )
                assoc.data_parts.append(pdv.data)
                if pdv.is_last:
                    command, assoc.command = assoc.command, None
                    parts, assoc.data_parts = assoc.data_parts, []
                    self._dispatch(sock, assoc, command, parts)

    def _dispatch(
        self,
        sock: socket.socket,
        assoc: _Association,
        command: ul.Command,
        data: list[memoryview] | None,
    ) -> None:
        abstract, syntax = assoc.contexts[assoc.command_context]
        if command.command_field == ul.C_ECHO_RQ:
            response = ul.echo_response(command, SUCCESS)
        elif command.command_field == ul.C_STORE_RQ and data is not None:
            if abstract != command.affected_sop_class or abstract == VERIFICATION:
                status: int = SOP_CLASS_NOT_SUPPORTED
                comment: str | None = "the SOP class does not match the presentation context"
            else:
                meta = ul.file_meta(
                    command.affected_sop_class,
                    command.affected_sop_instance,
                    syntax,
                    IMPLEMENTATION_UID,
                    IMPLEMENTATION_VERSION,
                )
                status, comment = self.services.store(
                    b"".join([meta, *data]), assoc.rq.calling_ae, assoc.ip
                )
            response = ul.store_response(command, status, comment)
        else:
            raise _Abort(f"DIMSE command 0x{command.command_field:04X} is not served here")
        for part in ul.encode_p_data(assoc.command_context, True, response, assoc.peer_max_pdu):
            sock.sendall(part)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until ``source`` closes, then close both directions of both sockets."""
    buffer = bytearray(RELAY_CHUNK)
    view = memoryview(buffer)
    try:
        while True:
            n = source.recv_into(buffer)
            if n == 0:
                break
            sink.sendall(view[:n])
    except OSError:
        pass
    finally:
        for sock in (sink, source):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
