"""Study Root Query/Retrieve SCP (PS3.4 Annex C): the C-FIND, C-GET and C-MOVE handlers.

Matching is done over the index by :mod:`appliance.dicom.query`. C-GET and C-MOVE send the
stored files' bytes unchanged: a sub-operation is sent only over a presentation context whose
transfer syntax is the file's own; otherwise it fails (counted in Number of Failed
Sub-operations and listed in Failed SOP Instance UID List, with an Error Comment) instead of
being transcoded (see :class:`~appliance.dicom.pynetdicom_compat.StoredFileSender`).
Only configured peers are served: the receiver's access check runs first and a refusal is
answered 0x0124 Refused: Not Authorized (PS3.7 C.5). Statuses: PS3.4 C.4, PS3.7 Annex C.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pynetdicom import build_context, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import snapshot
from appliance.dicom.pynetdicom_compat import (
    SenderTakesEveryMessage,
    StoredFileSender,
    set_nodelay,
)
from appliance.dicom.query import (
    UNABLE_TO_PROCESS,
    Query,
    QueryError,
    find,
    parse_identifier,
)
from appliance.dicom.retrieval import StoredInstance, instances, retrieve_query
from appliance.dicom.statuses import (
    CANCEL,
    NOT_AUTHORIZED,
    PENDING,
    SUBOPERATIONS_FAILED,
    SUBOPERATIONS_WARNING,
    failed_list,
    status,
)
from appliance.logs import get_logger
from appliance.storage.instances import instance_path
from appliance.storage.models import FileUnavailable

if TYPE_CHECKING:
    from appliance.context import AppContext  # the container only: no runtime import

log = get_logger("radiant.receiver")

MAX_CONTEXTS = 128  # presentation contexts one A-ASSOCIATE-RQ may propose (PS3.8 9.3.2.2)
SUBASSOCIATION_WAIT_S = 30.0
PEERS_ONLY = "query/retrieve is for configured peers only"

# (event, audit action) -> True when refused (and audited) by the receiver's access check
RefusalCheck = Callable[[evt.Event, str], bool]
AuditWriter = Callable[[Association, str, str, dict[str, Any]], None]


def can_send(assoc: Association, item: StoredInstance) -> bool:
    """An accepted context for the SOP class with exactly the file's transfer syntax, in
    which we may act as the Storage SCU (C-GET: the requestor took the SCP role)."""
    return any(
        cx.abstract_syntax == item.sop_class_uid
        and cx.transfer_syntax
        and cx.transfer_syntax[0] == item.transfer_syntax_uid
        and cx.as_scu
        for cx in assoc.accepted_contexts
    )


def contexts_for(matches: list[StoredInstance]) -> list[PresentationContext]:
    """One context per (SOP class, transfer syntax) among the matches, proposing exactly the
    stored transfer syntax, at most :data:`MAX_CONTEXTS` (the others then fail, not transcode)."""
    pairs = dict.fromkeys(
        (m.sop_class_uid, m.transfer_syntax_uid) for m in matches if m.transfer_syntax_uid
    )
    contexts = [build_context(sop_class, [syntax]) for sop_class, syntax in pairs]
    return contexts[:MAX_CONTEXTS] or [build_context(Verification)]


def _identifier(event: evt.Event, parse: Callable[[Dataset], Query]) -> Query:
    try:
        identifier = event.identifier
    except Exception:
        raise QueryError(UNABLE_TO_PROCESS, "the Identifier cannot be decoded") from None
    return parse(identifier)


class QueryRetrieveSCP:
    """The EVT_C_FIND, EVT_C_GET and EVT_C_MOVE handlers of the receiver's AE."""

    def __init__(
        self,
        ctx: AppContext,
        refused: RefusalCheck,
        audit_event: AuditWriter,
        actor: Callable[[Association], Actor],
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self._refused = refused
        self._audit = audit_event
        self._actor = actor

    def on_find(self, event: evt.Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """C-FIND (C.4.1): one pending response per match, then success."""
        if self._refused(event, "dicom.find"):
            yield status(NOT_AUTHORIZED, PEERS_ONLY), None
            return
        try:
            query = _identifier(event, parse_identifier)
        except QueryError as exc:
            log.warning("find_refused", status=f"0x{exc.status:04X}", reason=exc.comment)
            yield status(exc.status, exc.comment), None
            return
        db = self.ctx.pool.get()
        with snapshot(db):
            matches = list(find(db, query, retrieve_ae=self.settings.dicom_ae_title))
        audit.record_read(
            db,
            self._actor(event.assoc),
            "dicom.find",
            detail={"level": query.level.name, "matches": len(matches)},
        )
        for identifier in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, identifier

    def on_get(self, event: evt.Event) -> Iterator[Any]:
        """C-GET (C.4.3): C-STORE sub-operations over the requesting association."""
        if self._refused(event, "dicom.get"):
            yield 1
            yield status(NOT_AUTHORIZED, PEERS_ONLY), failed_list([])
            return
        try:
            query = _identifier(event, retrieve_query)
        except QueryError as exc:
            log.warning("get_refused", status=f"0x{exc.status:04X}", reason=exc.comment)
            yield 1
            yield status(exc.status, exc.comment), failed_list([])
            return
        db = self.ctx.pool.get()
        matches = instances(db, query)
        self._audit_retrieve(event.assoc, "dicom.get", query, matches, None)
        yield len(matches)
        if matches:
            yield from self._suboperations(event, event.assoc, matches)

    def on_move(self, event: evt.Event) -> Iterator[Any]:
        """C-MOVE (C.4.2): C-STORE sub-operations over a new association to a known peer."""
        if self._refused(event, "dicom.move"):
            yield None, None  # refused before any sub-association (answered 0xA801)
            return
        destination = (event.move_destination or "").strip()
        peer = self.settings.peers.get(destination)
        if peer is None:
            log.warning("move_refused", destination=destination, reason="unknown destination")
            self._audit(
                event.assoc,
                "dicom.move",
                "refused",
                {"destination": destination, "reason": "unknown move destination"},
            )
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        try:
            query = _identifier(event, retrieve_query)
        except QueryError as exc:
            log.warning("move_refused", status=f"0x{exc.status:04X}", reason=exc.comment)
            yield peer.host, peer.port, {"contexts": [build_context(Verification)]}
            yield 1
            yield status(exc.status, exc.comment), failed_list([])
            return
        db = self.ctx.pool.get()
        matches = instances(db, query)
        self._audit_retrieve(event.assoc, "dicom.move", query, matches, destination)
        opened: list[Association] = []
        established = threading.Event()

        def on_established(sub: evt.Event) -> None:
            set_nodelay(sub.assoc)
            SenderTakesEveryMessage.install(sub.assoc)
            opened.append(sub.assoc)
            established.set()

        contexts = contexts_for(matches)
        yield (
            peer.host,
            peer.port,
            {
                "contexts": contexts,
                "evt_handlers": [(evt.EVT_ESTABLISHED, on_established)],
            },
        )
        yield len(matches)
        # pynetdicom resumes here once the sub-association is established, but the
        # EVT_ESTABLISHED handler runs in that association's thread and may not have run yet
        # (seen under load): wait for it rather than skip the sub-operations.
        if matches and established.wait(SUBASSOCIATION_WAIT_S):
            yield from self._suboperations(event, opened[0], matches)
        elif matches:
            log.error("move_subassociation_unseen", destination=destination)
            yield (
                status(SUBOPERATIONS_FAILED, "no association to the destination"),
                (failed_list([m.sop_instance_uid for m in matches])),
            )

    def _suboperations(
        self, event: evt.Event, store_assoc: Association, matches: list[StoredInstance]
    ) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """Pending yields for the sendable instances, then a final status for the rest."""
        sender = StoredFileSender.attach(store_assoc)
        sender.begin()
        not_accepted: list[str] = []
        missing: list[str] = []
        for item in matches:
            if event.is_cancelled:
                yield CANCEL, failed_list(sender.failed + not_accepted + missing)
                return
            if not can_send(store_assoc, item):
                not_accepted.append(item.sop_instance_uid)
                continue
            try:  # an evicted file is fetched back from the bucket first
                path = instance_path(self.ctx.pool.get(), self.ctx.store, item.storage_key)
            except FileUnavailable as exc:
                log.warning("retrieve_file_unavailable", reason=exc.detail)
                missing.append(item.sop_instance_uid)
                continue
            if not path.is_file():
                log.error("retrieve_file_missing", storage_key=item.storage_key)
                missing.append(item.sop_instance_uid)
                continue
            sender.paths[item.sop_instance_uid] = path
            announce = Dataset()
            announce.SOPClassUID = item.sop_class_uid
            announce.SOPInstanceUID = item.sop_instance_uid
            yield PENDING, announce
        log.info(
            "retrieve_done",
            sent=sender.completed,
            failed=len(sender.failed),
            not_accepted=len(not_accepted),
            missing=len(missing),
        )
        if not_accepted or missing:
            code = SUBOPERATIONS_WARNING if sender.completed else SUBOPERATIONS_FAILED
            comment = (
                f"{len(not_accepted)} not sent: transfer syntax not accepted"
                if not_accepted
                else f"{len(missing)} not sent: stored file missing"
            )
            yield status(code, comment), failed_list(sender.failed + not_accepted + missing)

    def _audit_retrieve(
        self,
        assoc: Association,
        action: str,
        query: Query,
        matches: list[StoredInstance],
        destination: str | None,
    ) -> None:
        detail: dict[str, Any] = {
            "level": query.level.name,
            "studies": len({m.study_uid for m in matches}),
            "series": len({m.series_uid for m in matches}),
            "instances": len(matches),
        }
        if destination is not None:
            detail["destination"] = destination
        self._audit(assoc, action, "success", detail)
