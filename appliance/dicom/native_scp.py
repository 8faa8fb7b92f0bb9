"""Associations the native front end serves itself: C-ECHO and C-STORE (PS3.7 9.1.1, 9.1.5).

After the A-ASSOCIATE-AC, P-DATA-TF PDUs (PS3.8 9.3.5) are read whole by the idle deadline,
their PDVs reassembled into a command set and its data set (spooled, :mod:`appliance.dicom.spool`),
and each C-STORE answered only after :meth:`Services.store` returned, i.e. after the instance is
durable or refused. A-RELEASE-RQ is answered A-RELEASE-RP; a protocol error sends A-ABORT.
"""

from __future__ import annotations

import contextlib
import math
import socket
from dataclasses import dataclass, field

from appliance.dicom import dimse, part10, ul
from appliance.dicom.association_policy import VERIFICATION, Policy, Services
from appliance.dicom.gate import Connection, Gate
from appliance.dicom.spool import Spool
from appliance.logs import get_logger

log = get_logger("radiant.receiver.frontend")

IMPLEMENTATION_UID = "2.25.178255651463905129740960052213391427457"
IMPLEMENTATION_VERSION = "RADIANT_UL_1"
MAX_COMMAND_LENGTH = 1 << 16  # a command set is a few hundred bytes (PS3.7 9.3)
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122  # Refused: SOP Class not supported (PS3.7 Annex C)
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (PS3.4 B.2.3)


class Closed(Exception):
    """The peer closed the connection."""


class Abort(Exception):
    """Stop the association with an A-ABORT (provider, ``reason``)."""

    def __init__(self, message: str, reason: int = ul.ABORT_NOT_SPECIFIED) -> None:
        super().__init__(message)
        self.reason = reason


def recv_exact(
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
            raise Closed
        got += n
    return buffer


def send_abort(sock: socket.socket, reason: int) -> None:
    """A-ABORT from the service provider (PS3.8 9.3.8); a closed socket is ignored."""
    with contextlib.suppress(OSError):
        sock.sendall(ul.encode_abort(ul.ABORT_SOURCE_PROVIDER, reason))


@dataclass
class NativeAssociation:
    """One accepted association's negotiated state and DIMSE reassembly buffers."""

    rq: ul.AssociateRQ
    ip: str
    contexts: dict[int, tuple[str, str]]  # id -> (abstract syntax, transfer syntax)
    peer_max_pdu: int
    command_parts: list[memoryview] = field(default_factory=list)
    command: dimse.Command | None = None
    command_context: int = 0
    data: Spool | None = None


class NativeSession:
    """One established native association, served on its connection's thread."""

    def __init__(self, policy: Policy, services: Services, gate: Gate) -> None:
        self.policy = policy
        self.services = services
        self.gate = gate

    def run(self, conn: Connection, assoc: NativeAssociation) -> None:
        sock, gate = conn.sock, self.gate
        while True:
            try:
                # the whole next PDU by the idle deadline; none while a request is worked on
                gate.set_deadline(conn, self.policy.idle_s)
                kind, length = ul.parse_header(recv_exact(sock, ul.PDU_HEADER, gate, conn))
                if kind not in ul.PDU_TYPES:
                    raise Abort(f"unknown PDU type 0x{kind:02X}", ul.ABORT_UNRECOGNIZED_PDU)
                if length > self.policy.max_pdu + ul.PDU_HEADER or (
                    kind != ul.P_DATA_TF and length > 64
                ):
                    raise Abort(
                        f"PDU 0x{kind:02X} of {length} bytes", ul.ABORT_INVALID_PDU_PARAMETER
                    )
                body = recv_exact(sock, length, gate, conn)
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
                    raise Abort(f"PDU 0x{kind:02X} in an established association",
                                 ul.ABORT_UNEXPECTED_PDU)  # fmt: skip
            except (Closed, ConnectionError):
                return
            except TimeoutError:
                send_abort(sock, ul.ABORT_NOT_SPECIFIED)
                return
            except OSError:  # shut down at its deadline, or by stop()
                return
            except ul.ProtocolError as exc:
                log.warning("association_aborted", error=str(exc))
                send_abort(sock, exc.reason)
                return
            except Abort as exc:
                log.warning("association_aborted", error=str(exc))
                send_abort(sock, exc.reason)
                return

    def _p_data(self, sock: socket.socket, assoc: NativeAssociation, body: bytearray) -> None:
        for pdv in ul.decode_p_data(body):
            if pdv.context_id not in assoc.contexts:
                raise Abort(f"PDV on context {pdv.context_id}, not accepted",
                             ul.ABORT_INVALID_PDU_PARAMETER)  # fmt: skip
            if pdv.is_command:
                if assoc.command is not None:
                    raise Abort("a command arrived before the data set of the previous one",
                                 ul.ABORT_UNEXPECTED_PDU_PARAMETER)  # fmt: skip
                if assoc.command_parts and pdv.context_id != assoc.command_context:
                    raise Abort("command fragments on different contexts")
                assoc.command_context = pdv.context_id
                assoc.command_parts.append(pdv.data)
                if sum(len(part) for part in assoc.command_parts) > MAX_COMMAND_LENGTH:
                    raise Abort("a command set longer than any real one",
                                 ul.ABORT_INVALID_PDU_PARAMETER)  # fmt: skip
                if pdv.is_last:
                    raw = b"".join(assoc.command_parts)
                    assoc.command_parts = []
                    command = dimse.decode_command(raw)
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
                    raise Abort("a data set without its command", ul.ABORT_UNEXPECTED_PDU_PARAMETER)
                spool = assoc.data
                assert spool is not None  # set with the command
                spool.write(pdv.data)
                if spool.size > 2 * spool.max_bytes + (1 << 20):
                    # dropped as it came, but a peer that never ends it would hold the slot
                    raise Abort("a data set far beyond the maximum object size")
                if pdv.is_last:
                    command, assoc.command = assoc.command, None
                    assoc.data = None
                    self._dispatch(sock, assoc, command, spool)

    def _dispatch(
        self,
        sock: socket.socket,
        assoc: NativeAssociation,
        command: dimse.Command,
        data: Spool | None,
    ) -> None:
        abstract, syntax = assoc.contexts[assoc.command_context]
        if command.command_field == dimse.C_ECHO_RQ:
            response = dimse.echo_response(command, SUCCESS)
        elif command.command_field == dimse.C_STORE_RQ and data is not None:
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
                meta = part10.file_meta(
                    command.affected_sop_class,
                    command.affected_sop_instance,
                    syntax,
                    IMPLEMENTATION_UID,
                    IMPLEMENTATION_VERSION,
                )
                status, comment = self.services.store(
                    data.read(meta), assoc.rq.calling_ae, assoc.ip
                )
            response = dimse.store_response(command, status, comment)
        else:
            raise Abort(f"DIMSE command 0x{command.command_field:04X} is not served here")
        for part in ul.encode_p_data(assoc.command_context, True, response, assoc.peer_max_pdu):
            sock.sendall(part)
