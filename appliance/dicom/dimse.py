"""DIMSE command sets, encoded and decoded by hand (PS3.7 section 9.3 and Annex E).

A command set is group 0000 elements in Implicit VR Little Endian; only the few elements C-ECHO
and C-STORE use are encoded here. Decoding raises :class:`appliance.dicom.ul.ProtocolError` on
input that does not follow the standard, never anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from appliance.dicom.ul import ABORT_NOT_SPECIFIED, ProtocolError, uid_value

# DIMSE (PS3.7 9.3, E.1)
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
NO_DATA_SET = 0x0101
HAS_DATA_SET = 0x0001  # any other value than 0x0101 means a data set follows

_ELEMENT = struct.Struct("<HHI")

# Command elements (PS3.7 E.1) by tag (group 0000), with their VR for encoding
AFFECTED_SOP_CLASS_UID = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
PRIORITY = 0x0700
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE_UID = 0x1000
MOVE_ORIGINATOR_AE = 0x1030
MOVE_ORIGINATOR_MESSAGE_ID = 0x1031
_US = {COMMAND_FIELD, MESSAGE_ID, MESSAGE_ID_BEING_RESPONDED_TO, PRIORITY, COMMAND_DATA_SET_TYPE,
       STATUS, MOVE_ORIGINATOR_MESSAGE_ID}  # fmt: skip
_UI = {AFFECTED_SOP_CLASS_UID, AFFECTED_SOP_INSTANCE_UID}


@dataclass
class Command:
    """A decoded command set: the elements used here, by name."""

    command_field: int
    message_id: int = 0
    affected_sop_class: str = ""
    affected_sop_instance: str = ""
    data_set_type: int = NO_DATA_SET
    status: int | None = None
    error_comment: str = ""

    @property
    def has_data_set(self) -> bool:
        return self.data_set_type != NO_DATA_SET


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode an Implicit VR Little Endian command set (group 0000 only)."""
    view = memoryview(data)
    values: dict[int, memoryview] = {}
    pos = 0
    end = len(view)
    while pos < end:
        if end - pos < _ELEMENT.size:
            raise ProtocolError("command set: an element header is cut off", ABORT_NOT_SPECIFIED)
        group, element, length = _ELEMENT.unpack_from(view, pos)
        pos += _ELEMENT.size
        if group != 0 or length > end - pos:
            raise ProtocolError("command set: element outside group 0000 or cut off", 0)
        values[element] = view[pos : pos + length]
        pos += length

    def us(tag: int) -> int | None:
        raw = values.get(tag)
        if raw is None:
            return None
        if len(raw) != 2:
            raise ProtocolError(f"command set: (0000,{tag:04X}) is not a US value", 0)
        return int(struct.unpack("<H", raw)[0])

    field_value = us(COMMAND_FIELD)
    if field_value is None:
        raise ProtocolError("command set without Command Field (0000,0100)", 0)
    command = Command(field_value)
    command.message_id = us(MESSAGE_ID) or 0
    data_set_type = us(COMMAND_DATA_SET_TYPE)
    command.data_set_type = NO_DATA_SET if data_set_type is None else data_set_type
    command.status = us(STATUS)
    if AFFECTED_SOP_CLASS_UID in values:
        command.affected_sop_class = uid_value(values[AFFECTED_SOP_CLASS_UID], "Affected SOP Class")
    if AFFECTED_SOP_INSTANCE_UID in values:
        command.affected_sop_instance = uid_value(
            values[AFFECTED_SOP_INSTANCE_UID], "Affected SOP Instance UID"
        )
    if ERROR_COMMENT in values:
        command.error_comment = bytes(values[ERROR_COMMENT]).decode("latin-1").strip()
    return command


def _element(tag: int, value: int | str) -> bytes:
    if tag in _US:
        assert isinstance(value, int)
        return _ELEMENT.pack(0, tag, 2) + struct.pack("<H", value)
    raw = str(value).encode("ascii", errors="replace")
    if len(raw) % 2:
        raw += b"\x00" if tag in _UI else b" "
    return _ELEMENT.pack(0, tag, len(raw)) + raw


def encode_command(elements: list[tuple[int, int | str]]) -> bytes:
    """A command set with its Command Group Length (0000,0000) first; tags ascending."""
    body = b"".join(_element(tag, value) for tag, value in sorted(elements))
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<I", len(body)) + body


def store_response(request: Command, status: int, comment: str | None = None) -> bytes:
    """C-STORE-RSP (PS3.7 9.3.1.2) to ``request``."""
    elements: list[tuple[int, int | str]] = [
        (AFFECTED_SOP_CLASS_UID, request.affected_sop_class),
        (COMMAND_FIELD, C_STORE_RSP),
        (MESSAGE_ID_BEING_RESPONDED_TO, request.message_id),
        (COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        (STATUS, status),
        (AFFECTED_SOP_INSTANCE_UID, request.affected_sop_instance),
    ]
    if comment:
        elements.append((ERROR_COMMENT, comment[:64]))
    return encode_command(elements)


def echo_response(request: Command, status: int = 0) -> bytes:
    """C-ECHO-RSP (PS3.7 9.3.5.2) to ``request``."""
    return encode_command(
        [
            (AFFECTED_SOP_CLASS_UID, request.affected_sop_class),
            (COMMAND_FIELD, C_ECHO_RSP),
            (MESSAGE_ID_BEING_RESPONDED_TO, request.message_id),
            (COMMAND_DATA_SET_TYPE, NO_DATA_SET),
            (STATUS, status),
        ]
    )


def store_request(message_id: int, sop_class: str, sop_instance: str, priority: int = 0) -> bytes:
    """C-STORE-RQ (PS3.7 9.3.1.1), used by the tests."""
    return encode_command(
        [
            (AFFECTED_SOP_CLASS_UID, sop_class),
            (COMMAND_FIELD, C_STORE_RQ),
            (MESSAGE_ID, message_id),
            (PRIORITY, priority),
            (COMMAND_DATA_SET_TYPE, HAS_DATA_SET),
            (AFFECTED_SOP_INSTANCE_UID, sop_instance),
        ]
    )
