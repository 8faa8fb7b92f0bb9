"""Who the native front end lets in and how it holds up (issue 14): called and calling AE
titles (PS3.5, PS3.8 9.3.4), query/retrieve only for configured peers, the ARTIM deadline
(PS3.8 9.1.5) against a slow drip, the idle deadline, pending connections per address, the
association limit counting established associations only, spooled data sets and the maximum
object size. Raw sockets as the peer; no assertion on how long anything takes."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.config import Settings, valid_ae_title
from appliance.dicom import dimse, ul
from appliance.dicom.association_policy import printable_ae
from appliance.dicom.frontend import Frontend
from appliance.dicom.gate import Gate
from appliance.dicom.spool import Spool
from tests.servers import free_port
from tests.unit.test_dicom_ul import (
    EXPLICIT_LE,
    FIND,
    MR,
    T1,
    TIMEOUT,
    _associate,
    _connect,
    _policy,
    _read_pdu,
    _response,
    _rq,
    _Services,
    _split,
)


@pytest.fixture
def services() -> _Services:
    return _Services()


def _start(services: _Services, relay: list[int] | None = None, **changes: object) -> Frontend:
    def relay_to() -> int | None:
        if relay is not None:
            relay.append(1)
        return None

    frontend = Frontend("127.0.0.1", free_port(), _policy(**changes), services, relay_to)
    frontend.start()
    return frontend


def _connect_from(frontend: Frontend, source_ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.bind((source_ip, 0))
    sock.connect(("127.0.0.1", frontend.port))
    return sock


def _send_store(sock: socket.socket, context: int, sop_file: Path, fragment: int) -> bytes:
    sop_class, sop_instance, dataset = _split(sop_file)
    command = dimse.store_request(1, sop_class, sop_instance)
    sock.sendall(ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", len(command) + 2, context, 3) + command))
    for start in range(0, len(dataset), fragment):
        piece = dataset[start : start + fragment]
        last = 2 if start + fragment >= len(dataset) else 0
        sock.sendall(
            ul.pdu(ul.P_DATA_TF, struct.pack(">IBB", len(piece) + 2, context, last) + piece)
        )
    return dataset


# -- AE titles --------------------------------------------------------------------------------


def test_ae_title_characters() -> None:
    assert valid_ae_title("RADIANT") and valid_ae_title(" CT 1 ") and valid_ae_title("A" * 16)
    for bad in ("", "    ", "A" * 17, "BAD\\AE", "BEL\x07", "NUL\x00X", "CAFÉ", "LF\nX"):
        assert not valid_ae_title(bad), repr(bad)
    assert printable_ae("BEL\x07\nX\\é") == "BEL??X??"


def test_called_ae_title_must_be_ours(services: _Services) -> None:
    server = _start(services, called_ae="RADIANT")
    try:
        sock = _connect(server)
        contexts = [ul.ProposedContext(1, MR, [EXPLICIT_LE])]
        rq = ul.encode_associate_rq(
            "OTHER", "SCU", contexts, max_pdu=16384, implementation_uid="1.2.3"
        )
        sock.sendall(rq)
        # rejected-permanent, service user, called-AE-title-not-recognized (PS3.8 9.3.4)
        assert _read_pdu(sock) == (ul.A_ASSOCIATE_RJ, bytes([0, 1, 1, 7]))
        sock.close()
        ours, results, _ = _associate(server, (1, MR, [EXPLICIT_LE]))  # called "RADIANT"
        assert results[0].result == ul.ACCEPTANCE
        ours.close()
    finally:
        server.stop()
    assert services.refused == [("SCU", "127.0.0.1", "called AE title not recognized")]


@pytest.mark.parametrize("calling", ["EVIL\x1b[31m", "BACK\\SLASH", "NON\xe9ASCII"])
def test_calling_ae_titles_outside_ps35_are_rejected_and_never_logged_raw(
    services: _Services, calling: str
) -> None:
    server = _start(services)
    try:
        sock = _connect(server)
        sock.sendall(_rq((1, MR, [EXPLICIT_LE]), calling=calling))
        assert _read_pdu(sock) == (ul.A_ASSOCIATE_RJ, bytes([0, 1, 1, 3]))
    finally:
        server.stop()
    ((ae, ip, reason),) = services.refused
    assert ae == printable_ae(calling) and all(" " <= ch <= "~" and ch != "\\" for ch in ae)
    assert (ip, reason) == ("127.0.0.1", "calling AE title has characters outside PS3.5")


# -- query/retrieve only for configured peers --------------------------------------------------


def test_query_retrieve_only_for_a_configured_peer(services: _Services) -> None:
    relayed: list[int] = []
    peers = frozenset({("PACS", "127.0.0.1"), ("ELSEWHERE", "10.9.9.9")})
    server = _start(services, relayed, peers=peers)
    try:
        # unknown AE title, only C-FIND proposed: rejected
        sock = _connect(server)
        sock.sendall(_rq((1, FIND, [EXPLICIT_LE]), calling="NOBODY"))
        assert _read_pdu(sock) == (ul.A_ASSOCIATE_RJ, bytes([0, 1, 1, 3]))
        sock.close()
        # a known AE title from the wrong address: rejected too
        sock = _connect(server)
        sock.sendall(_rq((1, FIND, [EXPLICIT_LE]), calling="ELSEWHERE"))
        assert _read_pdu(sock)[0] == ul.A_ASSOCIATE_RJ
        sock.close()
        # storage and C-FIND from a stranger: storage served, the C-FIND context refused
        mixed, results, _ = _associate(server, (1, MR, [EXPLICIT_LE]), (3, FIND, [EXPLICIT_LE]),
                                       calling="SCANNER")  # fmt: skip
        assert [r.result for r in results] == [ul.ACCEPTANCE, ul.ABSTRACT_SYNTAX_NOT_SUPPORTED]
        mixed.close()
        assert relayed == []
        # the configured peer from its address: relayed to the query/retrieve AE
        peer = _connect(server)
        peer.sendall(_rq((1, FIND, [EXPLICIT_LE]), calling="PACS"))
        assert _read_pdu(peer)[0] == ul.A_ASSOCIATE_RJ  # (no AE behind in this test: busy)
        assert relayed == [1]
        peer.close()
    finally:
        server.stop()
    assert [(ae, reason) for ae, _, reason in services.refused[:3]] == [
        ("NOBODY", "query/retrieve refused: not a configured peer"),
        ("ELSEWHERE", "query/retrieve refused: address does not match the peer"),
        ("SCANNER", "query/retrieve refused: not a configured peer"),
    ]


def test_storage_may_be_restricted_to_peers(services: _Services) -> None:
    server = _start(services, peers=frozenset({("CT1", "127.0.0.1")}), store_peers_only=True)
    try:
        sock = _connect(server)
        sock.sendall(_rq((1, MR, [EXPLICIT_LE]), calling="STRANGER"))
        assert _read_pdu(sock) == (ul.A_ASSOCIATE_RJ, bytes([0, 1, 1, 3]))
        ct, results, _ = _associate(server, (1, MR, [EXPLICIT_LE]), calling="CT1")
        assert results[0].result == ul.ACCEPTANCE
        ct.close()
    finally:
        server.stop()


# -- deadlines and limits -----------------------------------------------------------------------


def test_artim_is_a_deadline_a_slow_drip_does_not_extend(services: _Services) -> None:
    """One byte of an A-ASSOCIATE-RQ every 0.3 s: a per-read timeout of 1 s would never fire;
    the 1 s ARTIM deadline closes the connection whatever it sends."""
    server = _start(services, artim_s=1.0)
    try:
        sock = _connect(server)
        rq = _rq((1, MR, [EXPLICIT_LE]))
        started = time.monotonic()
        closed = False
        for byte in rq[:60]:  # 18 s of dripping at most
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            sock.settimeout(0.3)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        print(f"slow drip closed after {time.monotonic() - started:.1f} s (ARTIM 1 s)")
        assert closed
        assert services.opened == 0
    finally:
        server.stop()


def test_idle_deadline_covers_a_pdu_dripped_in_an_association(services: _Services) -> None:
    server = _start(services, idle_s=1.0)
    try:
        sock, _, _ = _associate(server, (1, MR, [EXPLICIT_LE]))
        header = ul.pdu(ul.P_DATA_TF, bytes(100))
        aborted = False
        for byte in header[:60]:
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.3)
                data = sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                aborted = True
                break
            assert data[:1] in (bytes([ul.A_ABORT]), b"")
            aborted = True
            break
        assert aborted
    finally:
        server.stop()


def test_pending_connections_are_limited_per_address_and_in_all(services: _Services) -> None:
    server = _start(services, max_pending_per_ip=3, max_pending=6, artim_s=60.0)
    idle: list[socket.socket] = []
    gate = server.gate
    try:
        # 8 from one address: 5 of them closed at once
        idle += [_connect_from(server, "127.0.0.5") for _ in range(8)]
        # 2 from each of 4 more addresses: the total stays at 6, oldest closed first
        for n in range(6, 10):
            idle += [_connect_from(server, f"127.0.0.{n}") for _ in range(2)]
        for _ in range(200):  # until the accepting thread has seen all 16
            if gate.closed_pending + gate.pending >= len(idle):
                break
            time.sleep(0.05)
        print(f"{len(idle)} idle connections: {gate.closed_pending} closed, {gate.pending} kept")
        assert (gate.closed_pending, gate.pending) == (10, 6)
        assert all(_closed_now(sock) for sock in idle[:6])  # 5 over the address limit, 1 oldest
        assert {c.ip for c in gate.connections()} == {f"127.0.0.{n}" for n in (7, 8, 9)}
        # a scanner still gets in
        scanner, results, _ = _associate(server, (1, MR, [EXPLICIT_LE]))
        assert results[0].result == ul.ACCEPTANCE
        scanner.close()
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def _closed_now(sock: socket.socket) -> bool:
    sock.settimeout(2.0)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_only_established_associations_count_towards_the_limit(services: _Services) -> None:
    server = _start(services, max_associations=2)
    idle = [_connect(server) for _ in range(5)]  # never associate: do not count
    try:
        first, results, _ = _associate(server, (1, MR, [EXPLICIT_LE]))
        second, _, _ = _associate(server, (1, MR, [EXPLICIT_LE]))
        assert results[0].result == ul.ACCEPTANCE
        third = _connect(server)
        third.sendall(_rq((1, MR, [EXPLICIT_LE])))
        # rejected-transient, service provider (presentation), local limit exceeded
        assert _read_pdu(third) == (ul.A_ASSOCIATE_RJ, bytes([0, 2, 3, 2]))
        first.sendall(ul.encode_release_rq())
        assert _read_pdu(first)[0] == ul.A_RELEASE_RP
        first.close()
        for _ in range(100):
            if server.gate.established < 2:
                break
            time.sleep(0.05)
        again, results, _ = _associate(server, (1, MR, [EXPLICIT_LE]))
        assert results[0].result == ul.ACCEPTANCE
        for sock in (second, third, again):
            sock.close()
    finally:
        for sock in idle:
            sock.close()
        server.stop()


# -- spooling and the maximum object size ----------------------------------------------------------


def test_spool_moves_to_a_file_beyond_its_memory_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, memory_limit=1000)
    spool.write(b"a" * 600)
    assert not spool.on_disk
    spool.write(memoryview(b"b" * 600))
    assert spool.on_disk and spool.size == 1200
    assert list((tmp_path / "spool").iterdir()) == []  # anonymous: nothing left on a crash
    assert spool.read() == b"a" * 600 + b"b" * 600
    assert not spool.on_disk
    big = Spool(tmp_path / "spool", max_bytes=1000, memory_limit=100)
    big.write(b"x" * 800)
    big.write(b"y" * 800)
    assert big.too_large and not big.on_disk and big.size == 1600


def test_a_data_set_spooled_to_disk_is_stored_whole(services: _Services, tmp_path: Path) -> None:
    server = _start(services, spool_dir=tmp_path / "spool", spool_memory=4096)
    try:
        sock, _, _ = _associate(server, (1, MR, [EXPLICIT_LE]))
        dataset = _send_store(sock, 1, T1[0], 3000)
        response, _ = _response(sock)
        assert response.status == 0x0000
        (stored,) = services.stored
        assert stored.endswith(dataset) and stored[128:132] == b"DICM"
        sock.close()
    finally:
        server.stop()


def test_a_data_set_above_the_maximum_is_refused_and_reported(services: _Services) -> None:
    server = _start(services, max_object_bytes=10_000, spool_memory=4096)
    try:
        sock, _, _ = _associate(server, (1, MR, [EXPLICIT_LE]), calling="BIGSCU")
        _send_store(sock, 1, T1[0], 3000)
        response, _ = _response(sock)
        assert response.status == 0xA700  # Refused: Out of Resources (PS3.4 B.2.3)
        assert services.stored == []
        # the association goes on
        _send_store(sock, 1, T1[1], 3000)
        assert _response(sock)[0].status == 0xA700
        sock.close()
    finally:
        server.stop()
    ae, ip, reason = services.refused[0]
    assert (ae, ip) == ("BIGSCU", "127.0.0.1") and "above the maximum of 10000" in reason


def test_gate_counts_and_reaps(tmp_path: Path) -> None:
    gate = Gate(max_associations=1, max_pending=2, max_pending_per_ip=2, artim_s=0.0)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        first = gate.admit(pairs[0][0], "10.0.0.1")
        second = gate.admit(pairs[1][0], "10.0.0.2")
        assert first is not None and second is not None
        third = gate.admit(pairs[2][0], "10.0.0.3")  # the oldest pending one makes room
        assert third is not None and first.expired and gate.closed_pending == 1
        assert gate.establish(second) and not gate.establish(third)
        gate.release(second)
        assert gate.establish(third) and gate.established == 1
        gate.set_deadline(third, 0.0)
        assert gate.reap(grace=0.0) == 1 and third.expired
        pairs[2][1].settimeout(TIMEOUT)
        assert pairs[2][1].recv(1) == b""  # shut down
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_shipped_defaults_and_tls_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.dicom_host == "0.0.0.0"  # scanners must reach it
    assert (settings.dicom_check_called_aet, settings.dicom_store_peers_only) == (True, False)
    assert settings.peers == {}  # so query/retrieve is closed
    assert (settings.dicom_max_associations, settings.dicom_artim_s) == (25, 10.0)
    assert (settings.dicom_max_pending, settings.dicom_max_pending_per_ip) == (100, 10)
    assert settings.dicom_max_object_mb == 4096 and settings.dicom_tls_port is None
    with pytest.raises(ValidationError, match="DICOM_TLS_CLIENT_CA"):
        Settings(data_dir=tmp_path, dicom_tls_verify_clients="all")
    blank = Settings(data_dir=tmp_path, dicom_tls_port="", tls_cert="")  # type: ignore[arg-type]
    assert blank.dicom_tls_port is None and blank.tls_cert is None
