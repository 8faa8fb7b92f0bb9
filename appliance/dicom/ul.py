"""The DICOM Upper Layer protocol data units, encoded and decoded by hand.

PDUs are those of PS3.8 section 9.3 (big-endian lengths): A-ASSOCIATE-RQ (0x01), -AC (0x02),
-RJ (0x03), P-DATA-TF (0x04), A-RELEASE-RQ/RP (0x05/0x06) and A-ABORT (0x07), with the items of
9.3.2-9.3.3 and the user information sub-items of PS3.7 Annex D (0x51 maximum length, 0x52
implementation class UID, 0x53 asynchronous operations window, 0x54 SCP/SCU role selection,
0x55 implementation version name, 0x56/0x57 extended negotiation, 0x58 user identity). Unknown
items are skipped, as 9.3.1 requires of an acceptor.

DIMSE command sets are :mod:`appliance.dicom.dimse`; the Part 10 header of a received data set
is :mod:`appliance.dicom.part10`.

Every decoding function raises :class:`ProtocolError` on input that does not follow the
standard (lengths that run past their container included), never anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# PDU types (PS3.8 9.3.1)
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07
PDU_TYPES = frozenset(range(1, 8))
PDU_HEADER = 6  # type, reserved, 4-byte length

# Items (PS3.8 9.3.2, 9.3.3; PS3.7 D.3.3)
APPLICATION_CONTEXT_ITEM = 0x10
PRESENTATION_CONTEXT_RQ = 0x20
PRESENTATION_CONTEXT_AC = 0x21
ABSTRACT_SYNTAX = 0x30
TRANSFER_SYNTAX = 0x40
USER_INFORMATION = 0x50
MAXIMUM_LENGTH = 0x51
IMPLEMENTATION_CLASS_UID = 0x52
ASYNC_OPERATIONS_WINDOW = 0x53
ROLE_SELECTION = 0x54
IMPLEMENTATION_VERSION_NAME = 0x55
SOP_CLASS_EXTENDED = 0x56
SOP_CLASS_COMMON_EXTENDED = 0x57
USER_IDENTITY = 0x58

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # DICOM Application Context Name (PS3.7 A.2.1)

# Presentation context results (PS3.8 9.3.3.2)
ACCEPTANCE = 0
USER_REJECTION = 1
NO_REASON = 2
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

# A-ABORT source and reason (PS3.8 9.3.8)
ABORT_SOURCE_USER = 0
ABORT_SOURCE_PROVIDER = 2
ABORT_NOT_SPECIFIED = 0
ABORT_UNRECOGNIZED_PDU = 1
ABORT_UNEXPECTED_PDU = 2
ABORT_UNRECOGNIZED_PDU_PARAMETER = 4
ABORT_UNEXPECTED_PDU_PARAMETER = 5
ABORT_INVALID_PDU_PARAMETER = 6

_HEADER = struct.Struct(">BBI")
_ITEM = struct.Struct(">BBH")
_PDV = struct.Struct(">IBB")


class ProtocolError(Exception):
    """A PDU or command set that breaks PS3.7/PS3.8; ``reason`` is the A-ABORT reason to send."""

    def __init__(self, message: str, reason: int = ABORT_INVALID_PDU_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


# -- helpers ----------------------------------------------------------------------------------


def _ascii(raw: bytes | memoryview, what: str) -> str:
    try:
        return bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not ASCII") from None


def uid_value(raw: bytes | memoryview, what: str) -> str:
    return _ascii(raw, what).rstrip("\x00 ").strip()


def _ae(raw: bytes | memoryview, what: str) -> str:
    return _ascii(raw, what).strip(" \x00")


def _ae_title(raw: bytes | memoryview) -> str:
    """An AE title field as received (latin-1 never fails): the acceptor checks its characters
    (PS3.5 6.2) and answers an A-ASSOCIATE-RJ, not an A-ABORT, for one that breaks them."""
    return bytes(raw).decode("latin-1").rstrip(" \x00").lstrip(" ")


def _ae_field(title: str) -> bytes:
    return title.encode("latin-1")[:16].ljust(16, b" ")


def _items(body: memoryview, what: str) -> list[tuple[int, memoryview]]:
    """Split variable items (type, reserved, 2-byte length, value) with bounds checks."""
    items: list[tuple[int, memoryview]] = []
    pos = 0
    end = len(body)
    while pos < end:
        if end - pos < _ITEM.size:
            raise ProtocolError(f"{what}: an item header is cut off")
        kind, _, length = _ITEM.unpack_from(body, pos)
        pos += _ITEM.size
        if length > end - pos:
            raise ProtocolError(
                f"{what}: item 0x{kind:02X} claims {length} bytes, {end - pos} left"
            )
        items.append((kind, body[pos : pos + length]))
        pos += length
    return items


def _item(kind: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"item 0x{kind:02X} is too long")
    return _ITEM.pack(kind, 0, len(value)) + value


def pdu(kind: int, body: bytes) -> bytes:
    """One PDU: type, reserved byte, big-endian length, body."""
    return _HEADER.pack(kind, 0, len(body)) + body


def parse_header(header: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(PDU type, body length) of a 6-byte PDU header."""
    kind, _, length = _HEADER.unpack_from(header, 0)
    return kind, length


# -- A-ASSOCIATE ------------------------------------------------------------------------------


@dataclass
class ProposedContext:
    """One presentation context item of an A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]


@dataclass
class AssociateRQ:
    """The parts of an A-ASSOCIATE-RQ (PS3.8 9.3.2) an acceptor decides on."""

    protocol_version: int
    called_ae: str
    calling_ae: str
    application_context: str
    contexts: list[ProposedContext] = field(default_factory=list)
    max_pdu: int = 0  # 0: no limit (PS3.8 D.1)
    implementation_uid: str = ""
    implementation_version: str = ""
    async_window: tuple[int, int] | None = None
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # SCU, SCP
    extended_negotiation: bool = False  # SOP class (common) extended negotiation items present
    user_identity: bool = False


def decode_associate_rq(body: bytes | bytearray | memoryview) -> AssociateRQ:
    """Decode the body (after the 6-byte header) of an A-ASSOCIATE-RQ."""
    view = memoryview(body)
    if len(view) < 68:
        raise ProtocolError("A-ASSOCIATE-RQ shorter than its fixed fields")
    (version,) = struct.unpack_from(">H", view, 0)
    rq = AssociateRQ(
        protocol_version=version,
        called_ae=_ae_title(view[4:20]),
        calling_ae=_ae_title(view[20:36]),
        application_context="",
    )
    for kind, value in _items(view[68:], "A-ASSOCIATE-RQ"):
        if kind == APPLICATION_CONTEXT_ITEM:
            rq.application_context = uid_value(value, "Application Context Name")
        elif kind == PRESENTATION_CONTEXT_RQ:
            rq.contexts.append(_decode_context_rq(value))
        elif kind == USER_INFORMATION:
            _decode_user_information(value, rq)
        # any other item type is ignored (PS3.8 9.3.1)
    if not rq.application_context:
        raise ProtocolError("A-ASSOCIATE-RQ has no Application Context item")
    return rq


def _decode_context_rq(value: memoryview) -> ProposedContext:
    if len(value) < 4:
        raise ProtocolError("presentation context item shorter than 4 bytes")
    context_id = value[0]
    abstract = ""
    syntaxes: list[str] = []
    for kind, sub in _items(value[4:], "presentation context"):
        if kind == ABSTRACT_SYNTAX:
            abstract = uid_value(sub, "Abstract Syntax Name")
        elif kind == TRANSFER_SYNTAX:
            syntaxes.append(uid_value(sub, "Transfer Syntax Name"))
    return ProposedContext(context_id, abstract, syntaxes)


def _decode_user_information(value: memoryview, rq: AssociateRQ) -> None:
    for kind, sub in _items(value, "user information"):
        if kind == MAXIMUM_LENGTH:
            if len(sub) != 4:
                raise ProtocolError("Maximum Length sub-item is not 4 bytes")
            (rq.max_pdu,) = struct.unpack(">I", sub)
        elif kind == IMPLEMENTATION_CLASS_UID:
            rq.implementation_uid = uid_value(sub, "Implementation Class UID")
        elif kind == IMPLEMENTATION_VERSION_NAME:
            rq.implementation_version = _ae(sub, "Implementation Version Name")
        elif kind == ASYNC_OPERATIONS_WINDOW and len(sub) == 4:
            invoked, performed = struct.unpack(">HH", sub)
            rq.async_window = (invoked, performed)
        elif kind == ROLE_SELECTION:
            if len(sub) < 2:
                raise ProtocolError("SCP/SCU Role Selection sub-item is cut off")
            (uid_length,) = struct.unpack_from(">H", sub, 0)
            if len(sub) != 2 + uid_length + 2:
                raise ProtocolError("SCP/SCU Role Selection sub-item has a wrong length")
            uid = uid_value(sub[2 : 2 + uid_length], "SOP Class UID")
            rq.roles[uid] = (bool(sub[2 + uid_length]), bool(sub[3 + uid_length]))
        elif kind in (SOP_CLASS_EXTENDED, SOP_CLASS_COMMON_EXTENDED):
            rq.extended_negotiation = True
        elif kind == USER_IDENTITY:
            rq.user_identity = True


def encode_associate_rq(
    called_ae: str,
    calling_ae: str,
    contexts: list[ProposedContext],
    *,
    max_pdu: int,
    implementation_uid: str,
    implementation_version: str = "",
    extra_user_items: bytes = b"",
) -> bytes:
    """A whole A-ASSOCIATE-RQ PDU (used by the tests and the relay's health check)."""
    items = [_item(APPLICATION_CONTEXT_ITEM, APPLICATION_CONTEXT.encode())]
    for cx in contexts:
        sub = _item(ABSTRACT_SYNTAX, cx.abstract_syntax.encode())
        sub += b"".join(_item(TRANSFER_SYNTAX, ts.encode()) for ts in cx.transfer_syntaxes)
        items.append(_item(PRESENTATION_CONTEXT_RQ, bytes([cx.context_id, 0, 0, 0]) + sub))
    user = _item(MAXIMUM_LENGTH, struct.pack(">I", max_pdu))
    user += _item(IMPLEMENTATION_CLASS_UID, implementation_uid.encode())
    if implementation_version:
        user += _item(IMPLEMENTATION_VERSION_NAME, implementation_version.encode())
    items.append(_item(USER_INFORMATION, user + extra_user_items))
    fixed = struct.pack(">HH", 1, 0) + _ae_field(called_ae) + _ae_field(calling_ae) + bytes(32)
    return pdu(A_ASSOCIATE_RQ, fixed + b"".join(items))


@dataclass(frozen=True)
class ContextResult:
    """One presentation context item of an A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""

    context_id: int
    result: int
    transfer_syntax: str


def encode_associate_ac(
    rq: AssociateRQ,
    results: list[ContextResult],
    *,
    max_pdu: int,
    implementation_uid: str,
    implementation_version: str,
) -> bytes:
    """The A-ASSOCIATE-AC PDU answering ``rq``.

    Called and calling AE titles are returned as received (9.3.3). No Asynchronous Operations
    Window item is returned, which declines asynchronous operations politely: both sides then
    use the default of one outstanding operation (PS3.7 D.3.3.3).
    """
    items = [_item(APPLICATION_CONTEXT_ITEM, APPLICATION_CONTEXT.encode())]
    for res in results:
        sub = _item(TRANSFER_SYNTAX, res.transfer_syntax.encode())
        items.append(
            _item(PRESENTATION_CONTEXT_AC, bytes([res.context_id, 0, res.result, 0]) + sub)
        )
    user = _item(MAXIMUM_LENGTH, struct.pack(">I", max_pdu))
    user += _item(IMPLEMENTATION_CLASS_UID, implementation_uid.encode())
    user += _item(IMPLEMENTATION_VERSION_NAME, implementation_version.encode()[:16])
    items.append(_item(USER_INFORMATION, user))
    fixed = (
        struct.pack(">HH", 1, 0) + _ae_field(rq.called_ae) + _ae_field(rq.calling_ae) + bytes(32)
    )
    return pdu(A_ASSOCIATE_AC, fixed + b"".join(items))


def decode_associate_ac(body: bytes | bytearray | memoryview) -> tuple[list[ContextResult], int]:
    """(context results, peer's maximum PDU length) of an A-ASSOCIATE-AC body (for tests)."""
    view = memoryview(body)
    if len(view) < 68:
        raise ProtocolError("A-ASSOCIATE-AC shorter than its fixed fields")
    results: list[ContextResult] = []
    max_pdu = 0
    for kind, value in _items(view[68:], "A-ASSOCIATE-AC"):
        if kind == PRESENTATION_CONTEXT_AC:
            if len(value) < 4:
                raise ProtocolError("A-ASSOCIATE-AC: a presentation context item is cut off")
            syntax = ""
            for sub_kind, sub in _items(value[4:], "presentation context"):
                if sub_kind == TRANSFER_SYNTAX:
                    syntax = uid_value(sub, "Transfer Syntax Name")
            results.append(ContextResult(value[0], value[2], syntax))
        elif kind == USER_INFORMATION:
            for sub_kind, sub in _items(value, "user information"):
                if sub_kind == MAXIMUM_LENGTH and len(sub) == 4:
                    (max_pdu,) = struct.unpack(">I", sub)
    return results, max_pdu


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 permanent / 2 transient, source, reason."""
    return pdu(A_ASSOCIATE_RJ, bytes([0, result, source, reason]))


def encode_release_rp() -> bytes:
    return pdu(A_RELEASE_RP, bytes(4))


def encode_release_rq() -> bytes:
    return pdu(A_RELEASE_RQ, bytes(4))


def encode_abort(source: int, reason: int) -> bytes:
    """A-ABORT (PS3.8 9.3.8); the reason is only meaningful with source 2 (provider)."""
    return pdu(A_ABORT, bytes([0, 0, source, reason if source == ABORT_SOURCE_PROVIDER else 0]))


# -- P-DATA-TF --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PDV:
    """A presentation data value item (PS3.8 9.3.5.1, E.2 message control header)."""

    context_id: int
    is_command: bool
    is_last: bool
    data: memoryview


def decode_p_data(body: bytes | bytearray | memoryview) -> list[PDV]:
    """The PDV items of a P-DATA-TF body; slices of ``body``, not copies."""
    view = memoryview(body)
    pdvs: list[PDV] = []
    pos = 0
    end = len(view)
    if end == 0:
        raise ProtocolError("P-DATA-TF without a PDV item")
    while pos < end:
        if end - pos < _PDV.size:
            raise ProtocolError("P-DATA-TF: a PDV item header is cut off")
        length, context_id, control = _PDV.unpack_from(view, pos)
        if length < 2 or length - 2 > end - pos - _PDV.size:
            raise ProtocolError(f"P-DATA-TF: PDV item length {length} does not fit the PDU")
        start = pos + _PDV.size
        pdvs.append(
            PDV(context_id, bool(control & 1), bool(control & 2), view[start : start + length - 2])
        )
        pos = start + length - 2
    return pdvs


def encode_p_data(context_id: int, is_command: bool, payload: bytes, max_pdu: int) -> list[bytes]:
    """``payload`` as P-DATA-TF PDUs of at most ``max_pdu`` bytes each (0: no limit), one PDV
    per PDU, the last fragment flagged (PS3.8 9.3.5, E.2)."""
    # a PDU's length field counts the body: 6 bytes of PDV header, then the fragment
    room = len(payload) if max_pdu == 0 else max(max_pdu - 6, 1)
    pdus: list[bytes] = []
    pos = 0
    while True:
        chunk = payload[pos : pos + room]
        pos += len(chunk)
        last = pos >= len(payload)
        control = (1 if is_command else 0) | (2 if last else 0)
        pdus.append(pdu(P_DATA_TF, _PDV.pack(len(chunk) + 2, context_id, control) + chunk))
        if last:
            return pdus
