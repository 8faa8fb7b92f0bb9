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

This module holds the listener, the A-ASSOCIATE-RQ handling and the relay; who is let in and
what is accepted is :mod:`appliance.dicom.association_policy`, an accepted association is served
by :mod:`appliance.dicom.native_scp`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable

from appliance.dicom import ul
from appliance.dicom.association_policy import (
    REJECT_BUSY,
    REJECT_CALLING_AE,
    Policy,
    Services,
    is_peer,
    negotiate,
    printable_ae,
    proposes_query_retrieve,
    refusal,
    wants_relay,
)
from appliance.dicom.gate import Connection, Gate, shut
from appliance.dicom.native_scp import (
    IMPLEMENTATION_UID,
    IMPLEMENTATION_VERSION,
    Closed,
    NativeAssociation,
    NativeSession,
    recv_exact,
    send_abort,
)
from appliance.logs import get_logger

log = get_logger("radiant.receiver.frontend")

MAX_RQ_LENGTH = 1 << 20  # an A-ASSOCIATE-RQ this long is not a real one
RELAY_CHUNK = 1 << 16


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
            header = recv_exact(sock, ul.PDU_HEADER, self.gate, conn)
            kind, length = ul.parse_header(header)
            if kind != ul.A_ASSOCIATE_RQ or length > MAX_RQ_LENGTH:
                reason = (
                    ul.ABORT_UNEXPECTED_PDU if kind in ul.PDU_TYPES else ul.ABORT_UNRECOGNIZED_PDU
                )
                if kind == ul.A_ASSOCIATE_RQ:
                    reason = ul.ABORT_INVALID_PDU_PARAMETER
                self._abort(sock, reason)
                return
            body = recv_exact(sock, length, self.gate, conn)
        except (Closed, OSError):
            return  # timed out or gone before asking for anything
        try:
            rq = ul.decode_associate_rq(body)
        except ul.ProtocolError as exc:
            log.warning("association_malformed", error=str(exc))
            self._abort(sock, exc.reason)
            return
        refused = refusal(rq, ip, self.policy)
        if refused is None and not self.gate.establish(conn):
            refused = "too many associations at once", REJECT_BUSY
        if refused is not None:
            why, (result, source, diagnostic) = refused
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

    def _not_a_peer(self, conn: Connection, rq: ul.AssociateRQ) -> str | None:
        """Why this association may not query or retrieve (None: it may)."""
        if not is_peer(rq, conn.ip, self.policy):
            known = any(ae == rq.calling_ae for ae, _ in self.policy.peers)
            return "address does not match the peer" if known else "not a configured peer"
        sock = conn.sock
        if self.client_cert_for_qr and isinstance(sock, ssl.SSLSocket) and not sock.getpeercert():
            return "no verified client certificate"
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
        send_abort(sock, reason)

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
        assoc = NativeAssociation(rq, ip, contexts, rq.max_pdu)
        try:
            sock.sendall(ac)
        except OSError:
            return
        self.services.established(rq.calling_ae, ip)
        with self._lock:
            self._native += 1
        try:
            NativeSession(policy, self.services, self.gate).run(conn, assoc)
        finally:
            if assoc.data is not None:
                assoc.data.discard()
            with self._lock:
                self._native -= 1
            self.services.ended()
