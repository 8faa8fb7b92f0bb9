"""The receiver's access rules with both network front ends (``native`` and ``pynetdicom``):
query/retrieve only for configured peers (audited refusals), the called AE title check, and the
DICOM TLS listener (PS3.15 Annex B) with pynetdicom's ``tls_args`` as the peer."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from appliance.config import Settings
from appliance.context import AppContext, prepare
from appliance.dicom.receiver import Receiver
from appliance.dicom.statuses import NOT_AUTHORIZED
from appliance.dicom.summariser import Summariser
from tests.certs import Pki, make_pki
from tests.servers import free_port

DATA = Path(__file__).resolve().parents[1] / "data"
T1 = sorted((DATA / "mr_siemens_t1_sag_brain_35sl").glob("*.dcm"))
EXPLICIT_LE = "1.2.840.10008.1.2.1"
Frontend = Literal["native", "pynetdicom"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=["native", "pynetdicom"])
def receiver(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Pki
) -> Iterator[tuple[Receiver, AppContext]]:
    frontend: Frontend = request.param
    settings = Settings(
        data_dir=tmp_path / "data",
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        dicom_frontend=frontend,
        dicom_peers="PACS@127.0.0.1:104,CERTLESS@127.0.0.1:104",
        dicom_tls_port=free_port(),
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        dicom_tls_client_ca=pki.ca,
        dicom_tls_verify_clients="peers",
    )
    ctx = prepare(settings)
    server = Receiver(ctx)
    server.start()
    assert server.status().listening and server.status().error is None, server.status().error
    yield server, ctx
    server.stop()
    ctx.pool.close_all()


def _ae(title: str, *contexts: str) -> AE:
    ae = AE(ae_title=title)
    for context in contexts:
        ae.add_requested_context(context)
    return ae


def _find(assoc: Any) -> list[int]:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    responses = assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
    return [int(status.Status) for status, _ in responses if status]


def _refusals(ctx: AppContext) -> list[tuple[str, str, str, dict[str, Any]]]:
    rows = (
        ctx.pool.get()
        .execute(
            "SELECT action, actor, client, detail FROM audit_log WHERE outcome = 'refused'"
            " ORDER BY id"
        )
        .fetchall()
    )
    return [(a, b, c, json.loads(d)) for a, b, c, d in rows]


def test_query_retrieve_only_for_the_configured_peer(
    receiver: tuple[Receiver, AppContext],
) -> None:
    server, ctx = receiver
    port = server.settings.dicom_port
    find = StudyRootQueryRetrieveInformationModelFind
    peer = _ae("PACS", find).associate("127.0.0.1", port, ae_title="RADIANT")
    assert peer.is_established
    try:
        assert _find(peer) == [0x0000]  # nothing stored yet: no match, success
    finally:
        peer.release()
    stranger = _ae("STRANGER", find, StudyRootQueryRetrieveInformationModelGet, Verification)
    assoc = stranger.associate("127.0.0.1", port, ae_title="RADIANT")
    try:
        if server.settings.dicom_frontend == "native":
            # refused in front: only Verification accepted
            assert assoc.is_established
            accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
            assert accepted == {str(Verification)}
        else:
            # pynetdicom answers the request itself: Refused: Not Authorized (PS3.7 C.5)
            assert _find(assoc) == [NOT_AUTHORIZED]
    finally:
        assoc.release()
    refusals = _refusals(ctx)
    assert refusals, "the refusal is audited"
    action, actor, client, detail = refusals[0]
    assert action in ("dicom.association", "dicom.find")
    assert (actor, client) == ("dicom:STRANGER", "127.0.0.1")
    assert "not a configured peer" in detail["reason"]


def test_the_called_ae_title_must_be_ours(receiver: tuple[Receiver, AppContext]) -> None:
    server, ctx = receiver
    ae = _ae("SCANNER", Verification)
    wrong = ae.associate("127.0.0.1", server.settings.dicom_port, ae_title="SOMEONE")
    assert wrong.is_rejected
    right = ae.associate("127.0.0.1", server.settings.dicom_port, ae_title="RADIANT")
    assert right.is_established
    right.release()
    assert [detail["reason"] for *_, detail in _refusals(ctx)] == ["called AE title not recognized"]


def test_dicom_tls_with_pynetdicom(receiver: tuple[Receiver, AppContext], pki: Pki) -> None:
    server, ctx = receiver
    tls_port = server.settings.dicom_tls_port
    assert tls_port is not None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    ae = _ae("PACS", StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(MRImageStorage, [EXPLICIT_LE])
    assoc = ae.associate("127.0.0.1", tls_port, ae_title="RADIANT", tls_args=(context, "localhost"))
    assert assoc.is_established
    try:
        assert assoc.send_c_store(T1[0]).Status == 0x0000
        assert _find(assoc) == [0xFF00, 0x0000]
    finally:
        assoc.release()
    # the plain port still answers in clear; the TLS port does not
    plain = _ae("PACS", Verification).associate("127.0.0.1", tls_port, ae_title="RADIANT")
    assert not plain.is_established
    # a peer without a client certificate ("peers" checking): storage yes, query/retrieve no
    anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    ae = _ae("CERTLESS", StudyRootQueryRetrieveInformationModelFind, Verification)
    assoc = ae.associate(
        "127.0.0.1", tls_port, ae_title="RADIANT", tls_args=(anonymous, "localhost")
    )
    assert assoc.is_established
    try:
        if server.settings.dicom_frontend == "native":
            accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
            assert accepted == {str(Verification)}
        else:
            assert _find(assoc) == [NOT_AUTHORIZED]
    finally:
        assoc.release()
    reasons = [detail["reason"] for *_, detail in _refusals(ctx)]
    assert any("no verified client certificate" in reason for reason in reasons), reasons


def test_a_flood_of_refusals_is_audited_in_summary(receiver: tuple[Receiver, AppContext]) -> None:
    server, ctx = receiver
    for _ in range(50):
        server.refuse("FLOOD", "10.1.1.1", "called AE title not recognized")
    server.refuse("FLOOD", "10.1.1.1", "calling IP address not allowed")
    rows = [(client, detail) for _, _, client, detail in _refusals(ctx)]
    assert rows == [
        ("10.1.1.1", {"calling_ae": "FLOOD", "reason": "called AE title not recognized"}),
        ("10.1.1.1", {"calling_ae": "FLOOD", "reason": "calling IP address not allowed"}),
    ]
    assert server.status().refused_associations == 51
    summariser = Summariser(0.2)
    assert [summariser.repeated(("a",)) for _ in range(3)] == [0, None, None]
    time.sleep(0.3)
    assert summariser.repeated(("a",)) == 2  # the next row says how many were left out


def test_dicom_tls_serves_the_box_certificate_without_site_files(tmp_path: Path) -> None:
    """Without RADIANT_TLS_CERT/KEY the TLS port serves the box's own certificate (the one the
    screen serves and whose fingerprint hospital IT pins), not nothing."""
    from appliance import tls as box_certificate

    settings = Settings(
        data_dir=tmp_path / "data",
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        dicom_tls_port=free_port(),
    )
    ctx = prepare(settings)
    cert, _key = box_certificate.ensure_box_certificate(settings)
    server = Receiver(ctx)
    server.start()
    try:
        assert server.status().error is None, server.status().error
        tls_port = settings.dicom_tls_port
        assert tls_port is not None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        assoc = _ae("ECHOSCU", Verification).associate(
            "127.0.0.1", tls_port, ae_title="RADIANT", tls_args=(context, "localhost")
        )
        assert assoc.is_established
        try:
            assert assoc.send_c_echo().Status == 0x0000
        finally:
            assoc.release()
    finally:
        server.stop()
        ctx.pool.close_all()
