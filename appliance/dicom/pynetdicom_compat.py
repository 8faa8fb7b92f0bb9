"""Where the receiver reaches into pynetdicom beyond its public API, in one place.

Each item below depends on pynetdicom internals of the 3.0 series (module ``_config``, the
``Association.send_c_store`` signature, ``DIMSEServiceProvider.get_msg``, the acceptor's
``supported_contexts``, the DUL's socket). :data:`WRITTEN_FOR` is the version range they were
written and tested against; ``tests/unit/test_pynetdicom_compat.py`` fails when the installed
pynetdicom leaves it, so an upgrade re-checks each patch instead of breaking C-GET/C-MOVE
(PS3.4 C.4.2, C.4.3) in the field.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pynetdicom
from pydicom.dataset import Dataset
from pynetdicom import _config, build_context
from pynetdicom.association import Association

from appliance.dicom.query import UNABLE_TO_PROCESS
from appliance.dicom.statuses import SUCCESS
from appliance.logs import get_logger

log = get_logger("radiant.receiver")

# (major, minor) range: from the first, inclusive, to the second, exclusive
WRITTEN_FOR = ((3, 0), (3, 1))


def version_supported(version: str | None = None) -> bool:
    """True when ``version`` (default: the installed pynetdicom's) is in :data:`WRITTEN_FOR`."""
    numbers = [int(part) for part in re.findall(r"\d+", version or pynetdicom.__version__)[:2]]
    low, high = WRITTEN_FOR
    return len(numbers) == 2 and low <= (numbers[0], numbers[1]) < high


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings the receiver relies on.

    No identifier or event logging (it would print PHI); datasets received in memory (no
    half-written temp files); stored files sent as they are, never decoded and re-encoded.
    """
    if not version_supported():
        log.warning(
            "pynetdicom_version_untested",
            version=pynetdicom.__version__,
            written_for=">=3.0,<3.1",
        )
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.STORE_RECV_CHUNKED_DATASET = False
    _config.STORE_SEND_CHUNKED_DATASET = True
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def set_nodelay(assoc: Association) -> None:
    """TCP_NODELAY: without it each small DIMSE message waits on Nagle/delayed ACK.

    (pynetdicom's reactors also poll with 1 ms sleeps; shortening the DUL's ``_run_loop_delay``
    was tried and made C-MOVE sub-associations fail to negotiate under load: left alone.)"""
    sock = getattr(assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def tls_without_cert(assoc: Association) -> bool:
    """A TLS association (pynetdicom's own TLS port) whose peer presented no certificate."""
    sock = getattr(assoc.dul.socket, "socket", None)
    return isinstance(sock, ssl.SSLSocket) and not sock.getpeercert()


class StoredFileSender:
    """Stands in for ``Association.send_c_store`` during C-GET/C-MOVE sub-operations.

    pynetdicom hands each pending Dataset to ``send_c_store``; for the ones this receiver
    announced, the stored file is sent instead (in chunks, bytes unchanged), and the outcome is
    kept so the final response can list every failed instance.
    """

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.paths: dict[str, Path] = {}
        self.failed: list[str] = []
        self.completed = 0

    @classmethod
    def attach(cls, assoc: Association) -> StoredFileSender:
        current = assoc.__dict__.get("send_c_store")
        if isinstance(current, cls):
            return current
        sender = cls(assoc)
        setattr(assoc, "send_c_store", sender)  # noqa: B010 (shadows the bound method)
        return sender

    def begin(self) -> None:
        self.paths.clear()
        self.failed = []
        self.completed = 0

    def __call__(
        self,
        dataset: Dataset | str | Path,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        uid = str(getattr(dataset, "SOPInstanceUID", ""))
        path = self.paths.pop(uid, None) if isinstance(dataset, Dataset) else None
        target = path if path is not None else dataset
        try:
            result = Association.send_c_store(
                self.assoc, target, msg_id, priority, originator_aet, originator_id
            )
        except Exception:
            if path is not None:
                self.failed.append(uid)
            raise
        if path is not None:
            code = int(result.get("Status", UNABLE_TO_PROCESS))
            if code == SUCCESS or 0xB000 <= code <= 0xBFFF:
                self.completed += 1
            else:
                self.failed.append(uid)
        return result


class SenderTakesEveryMessage:
    """Stands in for ``DIMSEServiceProvider.get_msg`` on a C-MOVE sub-association: its own
    reactor thread never takes a message off the DIMSE queue; the thread sending the C-STOREs
    (which waits on that queue for each response) takes them all.

    Why: pynetdicom's ``send_c_store`` pauses the association's reactor before sending by
    clearing a checkpoint and waiting for the reactor's ``_is_paused`` flag. Right after the
    previous ``send_c_store`` resumed the reactor, that flag still reads paused until the
    reactor thread runs again, so under CPU load the next request goes out with the reactor
    actually running; when it then polls the queue it takes the C-STORE-RSP, drops it
    ("Received unexpected C-STORE service message"), the sender waits out the DIMSE timeout and
    aborts, and this and every remaining sub-operation fail. On a sub-association we only send
    requests (the peer has nothing for the reactor to serve), so nothing is lost by this.
    """

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.get_msg = assoc.dimse.get_msg

    @classmethod
    def install(cls, assoc: Association) -> None:
        """Before the association's reactor starts (from its EVT_ESTABLISHED handler)."""
        if not isinstance(assoc.dimse.__dict__.get("get_msg"), cls):
            setattr(assoc.dimse, "get_msg", cls(assoc))  # noqa: B010 (shadows the method)

    def __call__(self, block: bool = False) -> tuple[int | None, Any]:
        if threading.current_thread() is self.assoc:
            return None, None
        return self.get_msg(block)


def prefer_receivers_syntaxes(assoc: Association) -> None:
    """For a SOP class the requestor proposes to take the SCP role for (it will receive, as in
    C-GET), accept the transfer syntax it lists first rather than ours.

    PS3.8 9.3.2.2 leaves the choice among proposed syntaxes to the acceptor. For storage sent
    to us our order holds (uncompressed first: a sender never has to compress). For instances
    we send, the receiver's order says what it can take; since stored files are sent as they
    are (never transcoded), its first choice is what makes its compressed files retrievable.
    Done by replacing the acceptor's ``supported_contexts`` from the EVT_REQUESTED handler.
    """
    receiving = {str(uid) for uid, item in assoc.requestor.role_selection.items() if item.scp_role}
    if not receiving:
        return
    preferred: dict[str, list[str]] = {}
    for cx in assoc.requestor.requested_contexts:
        if str(cx.abstract_syntax) in receiving:
            order = preferred.setdefault(str(cx.abstract_syntax), [])
            order.extend(str(ts) for ts in cx.transfer_syntax if str(ts) not in order)
    contexts = []
    for cx in assoc.acceptor.supported_contexts:
        order = preferred.get(str(cx.abstract_syntax), [])
        ours = [str(ts) for ts in cx.transfer_syntax]
        if order:
            ranked = [ts for ts in order if ts in ours] + [ts for ts in ours if ts not in order]
            replacement = build_context(str(cx.abstract_syntax), ranked)
            replacement.scu_role, replacement.scp_role = cx.scu_role, cx.scp_role
            cx = replacement
        contexts.append(cx)
    assoc.acceptor.supported_contexts = contexts
