"""The native DICOM Upper Layer front end byte by byte (PS3.8 PDUs, PS3.7 command sets), with
raw sockets as the peer: fragmented PDVs, the peer's maximum PDU length, unknown items, bad
PDU types, lying lengths, contexts that cannot be accepted, refused callers, timers."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from appliance.dicom import dimse, ul
from appliance.dicom.association_policy import Policy
from appliance.dicom.frontend import Frontend
from appliance.dicom.native_scp import IMPLEMENTATION_UID
from tests.servers import free_port

DATA = Path(__file__).resolve().parents[1] / "data"
T1 = sorted((DATA / "mr_siemens_t1_sag_brain_35sl").glob("*.dcm"))
MR = "1.2.840.10008.5.1.4.1.1.4"
CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
JPEG_LS = "1.2.840.10008.1.2.4.80"
TIMEOUT = 20.0  # a safety net for reads; no assertion is made on how long anything takes


class _Services:
    """Services that record what the front end asked for (no database behind)."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.refused: list[tuple[str, str, str]] = []
        self.opened = 0
        self.closed = 0
        self.status = 0x0000
        self.comment: str | None = None

    def refuse(self, calling_ae: str, ip: str, reason: str) -> None:
        self.refused.append((calling_ae, ip, reason))

    def established(self, calling_ae: str, ip: str) -> None:
        self.opened += 1

    def store(self, data: bytes, calling_ae: str, ip: str) -> tuple[int, str | None]:
        self.stored.append(data)
        return self.status, self.comment

    def ended(self) -> None:
        self.closed += 1


def _policy(**changes: object) -> Policy:
    base: dict[str, object] = {
        "storage_classes": frozenset({MR, CT}),
        "storage_syntaxes": (EXPLICIT_LE, IMPLICIT_LE),
        "relayed_classes": frozenset({FIND}),
    }
    base.update(changes)
    return Policy(**base)  # type: ignore[arg-type]


@pytest.fixture
def services() -> _Services:
    return _Services()


def _start(services: _Services, **changes: object) -> Frontend:
    frontend = Frontend("127.0.0.1", free_port(), _policy(**changes), services, lambda: None)
    frontend.start()
    return frontend


@pytest.fixture
def frontend(services: _Services) -> Iterator[Frontend]:
    server = _start(services)
    yield server
    server.stop()


def _connect(frontend: Frontend) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", frontend.port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_exact(sock: socket.socket, length: int) -> bytes:
    out = b""
    while len(out) < length:
        chunk = sock.recv(length - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    kind, length = ul.parse_header(_read_exact(sock, 6))
    return kind, _read_exact(sock, length)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _rq(*contexts: tuple[int, str, list[str]], calling: str = "SCU", max_pdu: int = 16384,
        extra: bytes = b"") -> bytes:  # fmt: skip
    return ul.encode_associate_rq(
        "RADIANT",
        calling,
        [ul.ProposedContext(cid, syntax, list(ts)) for cid, syntax, ts in contexts],
        max_pdu=max_pdu,
        implementation_uid="1.2.3.4",
        implementation_version="TEST",
        extra_user_items=extra,
    )


def _associate(frontend: Frontend, *contexts: tuple[int, str, list[str]], **kw: object
               ) -> tuple[socket.socket, list[ul.ContextResult], bytes]:  # fmt: skip
    sock = _connect(frontend)
    sock.sendall(_rq(*contexts, **kw))  # type: ignore[arg-type]
    kind, body = _read_pdu(sock)
    assert kind == ul.A_ASSOCIATE_AC, kind
    results, _ = ul.decode_associate_ac(body)
    return sock, results, body


def _response(sock: socket.socket) -> tuple[dimse.Command, list[int]]:
    """Read P-DATA PDUs until a last command fragment; the command and each PDU's length."""
    parts: list[bytes] = []
    lengths: list[int] = []
    while True:
        kind, body = _read_pdu(sock)
        assert kind == ul.P_DATA_TF, kind
        lengths.append(len(body))
        for pdv in ul.decode_p_data(body):
            assert pdv.is_command
            parts.append(bytes(pdv.data))
            if pdv.is_last:
                return dimse.decode_command(b"".join(parts)), lengths


def _split(sop_file: Path) -> tuple[str, str, bytes]:
    ds = pydicom.dcmread(sop_file, stop_before_pixels=True)
    raw = sop_file.read_bytes()
    meta_end = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID), raw[meta_end:]


# -- codec ------------------------------------------------------------------------------------


def test_p_data_encoding_respects_the_maximum_and_reassembles() -> None:
    payload = bytes(range(256)) * 10
    pdus = ul.encode_p_data(3, False, payload, max_pdu=100)
    assert len(pdus) > 1
    out = b""
    for index, raw in enumerate(pdus):
        kind, length = ul.parse_header(raw)
        assert kind == ul.P_DATA_TF and length == len(raw) - 6 and length <= 100
        (pdv,) = ul.decode_p_data(raw[6:])
        assert pdv.context_id == 3 and not pdv.is_command
        assert pdv.is_last == (index == len(pdus) - 1)
        out += bytes(pdv.data)
    assert out == payload
    assert len(ul.encode_p_data(1, True, payload, max_pdu=0)) == 1  # 0: no limit


def test_command_round_trip_and_padding() -> None:
    request = dimse.decode_command(dimse.store_request(7, MR, "1.2.3"))
    assert (request.command_field, request.message_id, request.affected_sop_instance) == (
        dimse.C_STORE_RQ,
        7,
        "1.2.3",
    )
    assert request.has_data_set
    raw = dimse.store_response(request, 0xC000, "quarantined: x" * 10)
    assert len(raw) % 2 == 0
    response = dimse.decode_command(raw)
    assert response.status == 0xC000 and len(response.error_comment) <= 64
    assert response.affected_sop_class == MR and not response.has_data_set
    (group_length,) = struct.unpack_from("<I", raw, 8)
    assert group_length == len(raw) - 12


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x00\x10\x01\x03abc",  # PDV claims 16 bytes, 3 follow
        b"\x00\x00\x00\x01\x01\x03",  # PDV length below the 2 header bytes
        b"\x00\x00",  # header cut off
        b"",  # no PDV at all
    ],
)
def test_p_data_lengths_that_lie_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ul.ProtocolError):
        ul.decode_p_data(body)


def test_associate_rq_with_lying_item_length_is_a_protocol_error() -> None:
    raw = bytearray(_rq((1, MR, [EXPLICIT_LE])))
    # the application context item (first after the 68 fixed bytes) claims 5000 bytes
    struct.pack_into(">H", raw, 6 + 68 + 2, 5000)
    with pytest.raises(ul.ProtocolError, match="claims 5000"):
        ul.decode_associate_rq(bytes(raw[6:]))


# -- negotiation ------------------------------------------------------------------------------


def test_unknown_items_are_ignored_and_async_window_declined(frontend: Frontend) -> None:
    unknown_user = bytes([0x5F, 0, 0, 2]) + b"zz"  # an unknown user information sub-item
    async_window = bytes([0x53, 0, 0, 4]) + struct.pack(">HH", 5, 5)
    raw = bytearray(_rq((1, MR, [EXPLICIT_LE]), extra=unknown_user + async_window))
    unknown_item = bytes([0x77, 0, 0, 3]) + b"abc"  # an unknown top-level item
    raw[6 + 68 : 6 + 68] = unknown_item
    struct.pack_into(">I", raw, 2, len(raw) - 6)
    sock = _connect(frontend)
    sock.sendall(bytes(raw))
    kind, body = _read_pdu(sock)
    assert kind == ul.A_ASSOCIATE_AC
    results, max_pdu = ul.decode_associate_ac(body)
    assert results == [ul.ContextResult(1, ul.ACCEPTANCE, EXPLICIT_LE)] and max_pdu > 0
    user = next(v for k, v in ul._items(memoryview(body)[68:], "ac") if k == ul.USER_INFORMATION)
    sub_items = [k for k, _ in ul._items(user, "user")]
    assert ul.ASYNC_OPERATIONS_WINDOW not in sub_items  # declined: default window of 1
    assert IMPLEMENTATION_UID.encode() in body
    sock.close()


def test_no_acceptable_context_gives_an_ac_with_every_context_rejected(
    frontend: Frontend, services: _Services
) -> None:
    sock, results, _ = _associate(
        frontend, (1, "1.2.826.0.1.3680043.9.9999.1", [EXPLICIT_LE]), (3, MR, [JPEG_LS])
    )
    assert [(r.context_id, r.result) for r in results] == [
        (1, ul.ABSTRACT_SYNTAX_NOT_SUPPORTED),
        (3, ul.TRANSFER_SYNTAXES_NOT_SUPPORTED),
    ]
    sock.sendall(ul.encode_release_rq())
    assert _read_pdu(sock)[0] == ul.A_RELEASE_RP
    sock.close()


def test_the_receivers_syntax_order_wins_for_storage(frontend: Frontend) -> None:
    sock, results, _ = _associate(frontend, (1, MR, [JPEG_LS, IMPLICIT_LE, EXPLICIT_LE]))
    assert results == [ul.ContextResult(1, ul.ACCEPTANCE, EXPLICIT_LE)]
    sock.close()


def test_calling_ae_and_ip_not_allowed_are_rejected(services: _Services) -> None:
    server = _start(services, allowed_aets=frozenset({"GOOD"}))
    try:
        sock = _connect(server)
        sock.sendall(_rq((1, MR, [EXPLICIT_LE]), calling="BAD"))
        kind, body = _read_pdu(sock)
        assert (kind, body) == (ul.A_ASSOCIATE_RJ, bytes([0, 1, 1, 3]))
        assert _closed(sock)
        good, results, _ = _associate(server, (1, MR, [EXPLICIT_LE]), calling="GOOD")
        assert results[0].result == ul.ACCEPTANCE
        good.close()
    finally:
        server.stop()
    server = _start(services, allowed_ips=frozenset({"10.1.2.3"}))
    try:
        sock = _connect(server)
        sock.sendall(_rq((1, MR, [EXPLICIT_LE]), calling="GOOD"))
        assert _read_pdu(sock) == (ul.A_ASSOCIATE_RJ, bytes([0, 1, 1, 1]))
    finally:
        server.stop()
    assert services.refused == [
        ("BAD", "127.0.0.1", "calling AE title not allowed"),
        ("GOOD", "127.0.0.1", "calling IP address not allowed"),
    ]


# -- DIMSE over P-DATA ------------------------------------------------------------------------


def test_fragmented_pdvs_are_reassembled_into_the_file(
    frontend: Frontend, services: _Services
) -> None:
    sop_class, sop_instance, dataset = _split(T1[0])
    sock, results, _ = _associate(frontend, (5, sop_class, [EXPLICIT_LE]))
    assert results[0].result == ul.ACCEPTANCE
    command = dimse.store_request(11, sop_class, sop_instance)
    # the command in two PDUs, then the data set in 700-byte PDVs, three per PDU
    for part, last in ((command[:20], False), (command[20:], True)):
        sock.sendall(ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", len(part) + 2, 5, 1 | 2 * last)
                            + part))  # fmt: skip
    pieces = [dataset[i : i + 700] for i in range(0, len(dataset), 700)]
    for start in range(0, len(pieces), 3):
        body = b""
        for index in range(start, min(start + 3, len(pieces))):
            control = 2 if index == len(pieces) - 1 else 0
            body += struct.pack(">IBB", len(pieces[index]) + 2, 5, control) + pieces[index]
        sock.sendall(ul.pdu(ul.P_DATA_TF, body))
    response, _ = _response(sock)
    assert (response.command_field, response.status) == (dimse.C_STORE_RSP, 0x0000)
    assert response.message_id == 0  # a response carries Message ID Being Responded To
    assert response.affected_sop_instance == sop_instance
    (stored,) = services.stored
    assert stored.endswith(dataset) and stored[128:132] == b"DICM"
    meta = pydicom.dcmread(pydicom.filebase.DicomBytesIO(stored), stop_before_pixels=True)
    assert meta.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert meta.file_meta.MediaStorageSOPInstanceUID == sop_instance
    sock.sendall(ul.encode_release_rq())
    assert _read_pdu(sock)[0] == ul.A_RELEASE_RP
    sock.close()


def test_responses_respect_the_peers_maximum_pdu_length(
    frontend: Frontend, services: _Services
) -> None:
    services.status, services.comment = 0xC000, "quarantined: a reason long enough to split"
    sop_class, sop_instance, dataset = _split(T1[1])
    sock, _, _ = _associate(frontend, (1, sop_class, [EXPLICIT_LE]), (3, VERIFICATION,
                            [IMPLICIT_LE]), max_pdu=40)  # fmt: skip
    command = dimse.store_request(2, sop_class, sop_instance)
    sock.sendall(ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", len(command) + 2, 1, 3) + command))
    sock.sendall(ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", len(dataset) + 2, 1, 2) + dataset))
    response, lengths = _response(sock)
    assert response.status == 0xC000 and response.error_comment.startswith("quarantined")
    assert len(lengths) > 1 and max(lengths) <= 40
    echo = dimse.encode_command([(dimse.AFFECTED_SOP_CLASS_UID, VERIFICATION),
                              (dimse.COMMAND_FIELD, dimse.C_ECHO_RQ), (dimse.MESSAGE_ID, 3),
                              (dimse.COMMAND_DATA_SET_TYPE, dimse.NO_DATA_SET)])  # fmt: skip
    sock.sendall(ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", len(echo) + 2, 3, 3) + echo))
    response, lengths = _response(sock)
    assert (response.command_field, response.status) == (dimse.C_ECHO_RSP, 0)
    assert max(lengths) <= 40
    sock.close()


# -- protocol errors: A-ABORT, never a crash --------------------------------------------------


def _expect_abort(sock: socket.socket) -> None:
    kind, body = _read_pdu(sock)
    assert kind == ul.A_ABORT and len(body) == 4
    assert _closed(sock)


def _still_serving(frontend: Frontend) -> None:
    sock, results, _ = _associate(frontend, (1, VERIFICATION, [IMPLICIT_LE]))
    assert results[0].result == ul.ACCEPTANCE
    sock.sendall(ul.encode_release_rq())
    assert _read_pdu(sock)[0] == ul.A_RELEASE_RP
    sock.close()


@pytest.mark.parametrize(
    "raw",
    [
        ul.pdu(0x09, b"\x00" * 4),  # no such PDU type
        ul.pdu(ul.A_ASSOCIATE_RQ, b"\x00" * 10),  # a second RQ in an established association
        ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", 5000, 1, 3) + b"abc"),  # PDV longer than PDU
        ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", 5, 9, 3) + b"abc"),  # context never accepted
        ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", 5, 1, 0) + b"abc"),  # data without command
        struct.pack(">BBI", ul.P_DATA_TF, 0, 1 << 30),  # a PDU longer than our maximum
        ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", 6, 1, 3) + b"\x00\x00\x01\x00"),  # bad command
    ],
    ids=[
        "unknown-type",
        "second-rq",
        "pdv-overrun",
        "bad-context",
        "orphan-data",
        "huge-pdu",
        "bad-command",
    ],
)
def test_bad_pdus_in_an_association_are_aborted(
    frontend: Frontend, services: _Services, raw: bytes
) -> None:
    sock, _, _ = _associate(frontend, (1, MR, [EXPLICIT_LE]))
    sock.sendall(raw)
    _expect_abort(sock)
    assert services.stored == []
    _still_serving(frontend)


@pytest.mark.parametrize(
    "raw",
    [
        ul.pdu(ul.P_DATA_TF, b"\x00" * 8),  # P-DATA before any association
        ul.pdu(0x0B, b""),  # unknown type
        struct.pack(">BBI", ul.A_ASSOCIATE_RQ, 0, 1 << 30),  # RQ claiming a gigabyte
        _rq((1, MR, [EXPLICIT_LE]))[:6] + b"\x00" * 70 + b"\x10\x00\x99\x99",  # item overrun
    ],
    ids=["p-data-first", "unknown-type", "huge-rq", "rq-item-overrun"],
)
def test_bad_first_pdus_are_aborted(frontend: Frontend, raw: bytes) -> None:
    sock = _connect(frontend)
    if raw[0] == ul.A_ASSOCIATE_RQ and len(raw) > 6:
        raw = raw[:2] + struct.pack(">I", len(raw) - 6) + raw[6:]
    sock.sendall(raw)
    _expect_abort(sock)
    _still_serving(frontend)


def test_a_pdu_cut_short_by_the_peer_ends_quietly(frontend: Frontend, services: _Services) -> None:
    sock, _, _ = _associate(frontend, (1, MR, [EXPLICIT_LE]))
    sop_class, sop_instance, dataset = _split(T1[2])
    command = dimse.store_request(1, sop_class, sop_instance)
    sock.sendall(ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", len(command) + 2, 1, 3) + command))
    # a data PDU announcing the whole data set, of which only a part is sent before closing
    body = struct.pack(">IBB", len(dataset) + 2, 1, 2) + dataset
    sock.sendall(struct.pack(">BBI", ul.P_DATA_TF, 0, len(body)) + body[:1000])
    sock.close()
    _still_serving(frontend)
    assert services.stored == []


# -- timers -----------------------------------------------------------------------------------


def test_artim_closes_a_connection_that_never_asks(services: _Services) -> None:
    server = _start(services, artim_s=0.2, idle_s=0.2)
    try:
        silent = _connect(server)
        assert _closed(silent)  # no A-ASSOCIATE-RQ: closed when ARTIM expires
        idle, _, _ = _associate(server, (1, MR, [EXPLICIT_LE]))
        _expect_abort(idle)  # established but silent: aborted at the idle timeout
        assert services.opened == services.closed == 1
    finally:
        server.stop()


def test_stop_aborts_open_associations(services: _Services) -> None:
    server = _start(services)
    sock, _, _ = _associate(server, (1, MR, [EXPLICIT_LE]))
    done = threading.Event()

    def stop() -> None:
        server.stop()
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    assert done.wait(TIMEOUT)
    assert _closed(sock)
    assert not server.listening and server.active == 0
