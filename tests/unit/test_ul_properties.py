"""Property tests (hypothesis) of the Upper Layer encoders and decoders: whatever an encoder
writes, its decoder reads back unchanged (PS3.8 9.3, PS3.7 E.1)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.dicom import dimse, ul

_UID = st.from_regex(r"\A[1-9][0-9]{0,8}(\.(0|[1-9][0-9]{0,8})){1,6}\Z")
_AE = st.from_regex(r"\A[A-Z0-9_]{1,16}\Z")
_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)


@st.composite
def _contexts(draw: st.DrawFn) -> list[ul.ProposedContext]:
    count = draw(st.integers(1, 8))
    ids = [2 * i + 1 for i in range(count)]
    return [
        ul.ProposedContext(cid, draw(_UID), draw(st.lists(_UID, min_size=1, max_size=4)))
        for cid in ids
    ]


@_SETTINGS
@given(
    called=_AE,
    calling=_AE,
    contexts=_contexts(),
    max_pdu=st.integers(0, 2**32 - 1),
    implementation=_UID,
    version=st.from_regex(r"\A[A-Z0-9_]{0,16}\Z"),
)
def test_associate_rq_round_trip(
    called: str,
    calling: str,
    contexts: list[ul.ProposedContext],
    max_pdu: int,
    implementation: str,
    version: str,
) -> None:
    encoded = ul.encode_associate_rq(
        called,
        calling,
        contexts,
        max_pdu=max_pdu,
        implementation_uid=implementation,
        implementation_version=version,
    )
    kind, length = ul.parse_header(encoded[: ul.PDU_HEADER])
    assert (kind, length) == (ul.A_ASSOCIATE_RQ, len(encoded) - ul.PDU_HEADER)
    rq = ul.decode_associate_rq(encoded[ul.PDU_HEADER :])
    assert (rq.called_ae, rq.calling_ae) == (called, calling)
    assert rq.contexts == contexts
    assert rq.max_pdu == max_pdu
    assert (rq.implementation_uid, rq.implementation_version) == (implementation, version)


@_SETTINGS
@given(
    context_id=st.integers(1, 255).filter(lambda n: n % 2 == 1),
    is_command=st.booleans(),
    payload=st.binary(max_size=5000),
    max_pdu=st.sampled_from([0, 7, 64, 1000, 16384]),
)
def test_p_data_round_trip(context_id: int, is_command: bool, payload: bytes, max_pdu: int) -> None:
    pdus = ul.encode_p_data(context_id, is_command, payload, max_pdu)
    parts = []
    for index, encoded in enumerate(pdus):
        kind, length = ul.parse_header(encoded[: ul.PDU_HEADER])
        assert kind == ul.P_DATA_TF and length == len(encoded) - ul.PDU_HEADER
        if max_pdu:
            assert len(encoded) - ul.PDU_HEADER <= max(max_pdu, 7)
        (pdv,) = ul.decode_p_data(encoded[ul.PDU_HEADER :])
        assert (pdv.context_id, pdv.is_command) == (context_id, is_command)
        assert pdv.is_last == (index == len(pdus) - 1)
        parts.append(bytes(pdv.data))
    assert b"".join(parts) == payload


@_SETTINGS
@given(
    message_id=st.integers(0, 0xFFFF),
    sop_class=_UID,
    sop_instance=_UID,
    priority=st.sampled_from([0, 1, 2]),
)
def test_store_request_round_trip(
    message_id: int, sop_class: str, sop_instance: str, priority: int
) -> None:
    command = dimse.decode_command(
        dimse.store_request(message_id, sop_class, sop_instance, priority)
    )
    assert command.command_field == dimse.C_STORE_RQ
    assert command.message_id == message_id
    assert (command.affected_sop_class, command.affected_sop_instance) == (sop_class, sop_instance)
    assert command.has_data_set


@_SETTINGS
@given(
    message_id=st.integers(0, 0xFFFF),
    sop_class=_UID,
    sop_instance=_UID,
    status=st.integers(0, 0xFFFF),
    comment=st.one_of(st.none(), st.from_regex(r"\A[ -~]{1,64}\Z").map(str.strip)),
)
def test_store_response_round_trip(
    message_id: int, sop_class: str, sop_instance: str, status: int, comment: str | None
) -> None:
    request = dimse.decode_command(dimse.store_request(message_id, sop_class, sop_instance))
    response = dimse.decode_command(dimse.store_response(request, status, comment or None))
    assert response.command_field == dimse.C_STORE_RSP
    assert response.status == status
    assert (response.affected_sop_class, response.affected_sop_instance) == (
        sop_class,
        sop_instance,
    )
    assert not response.has_data_set
    if comment:
        assert response.error_comment == comment
