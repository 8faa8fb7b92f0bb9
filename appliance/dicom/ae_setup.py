"""How the receiver's Application Entity is set up: what it accepts and whom it serves.

Presentation contexts (PS3.8 9.3.2.2, PS3.7 D.3.3.4 role selection): every storage SOP class
pynetdicom knows in :data:`TRANSFER_SYNTAXES`, Verification and Study Root Query/Retrieve
(PS3.4 Annexes A, B, C). The same choices become the native front end's :class:`Policy`, so both
front ends accept the same associations. The TLS context is PS3.15 Annex B.
"""

from __future__ import annotations

import socket
import ssl

from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from appliance import tls as box_certificate
from appliance.config import Settings
from appliance.dicom import tls
from appliance.dicom.association_policy import Policy
from appliance.logs import get_logger

log = get_logger("radiant.receiver")

# Transfer syntaxes accepted for storage (PS3.5 Annex A / PS3.6 Annex A)
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
MAX_PDU = 1 << 20  # largest P-DATA PDU we accept; the peer sends at most this much per PDU
QUERY_RETRIEVE = (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)


def add_supported_contexts(ae: AE) -> None:
    """Every storage SOP class with :data:`TRANSFER_SYNTAXES`, accepting both roles (C-GET's
    SCP/SCU role selection, PS3.7 D.3.3.4), plus Verification and Study Root Q/R."""
    for storage in AllStoragePresentationContexts:
        ae.add_supported_context(
            str(storage.abstract_syntax), TRANSFER_SYNTAXES, scu_role=True, scp_role=True
        )
    for service in (Verification, *QUERY_RETRIEVE):
        ae.add_supported_context(service)


def build_ae(settings: Settings) -> AE:
    """The pynetdicom AE: our title, limits and timeouts, calling/called AE title checks."""
    ae = AE(ae_title=settings.dicom_ae_title)
    ae.maximum_pdu_size = MAX_PDU
    ae.require_calling_aet = sorted(settings.allowed_aets)
    ae.require_called_aet = settings.dicom_check_called_aet
    ae.maximum_associations = settings.dicom_max_associations
    ae.acse_timeout = settings.dicom_artim_s
    ae.network_timeout = settings.dicom_idle_s
    add_supported_contexts(ae)
    return ae


def peer_addresses(settings: Settings) -> frozenset[tuple[str, str]]:
    """(AE title, IP) of each configured peer; a host name counts with each of its addresses
    (resolved at start; a name that does not resolve allows nothing)."""
    pairs: set[tuple[str, str]] = set()
    for peer in settings.peers.values():
        pairs.add((peer.ae_title, peer.host))
        try:
            infos = socket.getaddrinfo(peer.host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            log.warning("peer_unresolved", peer=peer.ae_title)
            continue
        pairs.update((peer.ae_title, str(info[4][0])) for info in infos)
    return frozenset(pairs)


def frontend_policy(settings: Settings, peers: frozenset[tuple[str, str]]) -> Policy:
    """What the native front end serves itself, relays, and lets in."""
    storage = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
    relayed = frozenset(str(uid) for uid in QUERY_RETRIEVE)
    return Policy(
        storage_classes=storage,
        storage_syntaxes=tuple(TRANSFER_SYNTAXES),
        relayed_classes=relayed,
        allowed_aets=settings.allowed_aets,
        allowed_ips=settings.allowed_ips,
        max_pdu=MAX_PDU,
        max_associations=settings.dicom_max_associations,
        artim_s=settings.dicom_artim_s,
        idle_s=settings.dicom_idle_s,
        called_ae=settings.dicom_ae_title if settings.dicom_check_called_aet else None,
        peers=peers,
        store_peers_only=settings.dicom_store_peers_only,
        max_pending=settings.dicom_max_pending,
        max_pending_per_ip=settings.dicom_max_pending_per_ip,
        max_object_bytes=settings.dicom_max_object_mb << 20,
        spool_dir=settings.data_dir / "spool",
    )


def tls_context(settings: Settings) -> tuple[ssl.SSLContext | None, str | None]:
    """The DICOM TLS server context when ``RADIANT_DICOM_TLS_PORT`` is set, with the site's
    certificate (RADIANT_TLS_CERT/KEY) or else the box's own (:mod:`appliance.tls`); or
    (None, why not) when it cannot be built."""
    if settings.dicom_tls_port is None:
        return None, None
    pair = box_certificate.certificate_paths(settings)
    try:
        context = tls.server_context(
            pair[0] if pair else None,
            pair[1] if pair else None,
            client_ca=settings.dicom_tls_client_ca,
            verify_clients=settings.dicom_tls_verify_clients,
        )
    except tls.TLSConfigError as exc:
        log.error("receiver_tls_failed", error=str(exc))
        return None, f"DICOM TLS port not opened: {exc}"
    return context, None
