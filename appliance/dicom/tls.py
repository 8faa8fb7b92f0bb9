"""The TLS context of the DICOM TLS listener (PS3.15 Annex B, BCP 195 profile).

The box certificate and key are PEM files (``RADIANT_TLS_CERT``, ``RADIANT_TLS_KEY``), the same
the HTTPS side serves. TLS 1.2 is the floor (PS3.15 B.9, BCP 195 non-downgrading profile);
Python's default cipher list already excludes the suites BCP 195 forbids. Client certificates
are checked against ``RADIANT_DICOM_TLS_CLIENT_CA``: ``peers`` asks for one (a presented
certificate must verify; query/retrieve then needs one), ``all`` requires one (mutual TLS).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

VerifyClients = Literal["none", "peers", "all"]


class TLSConfigError(Exception):
    """The certificate, key or client CA cannot be loaded; the message says which."""


def server_context(
    cert: Path | None,
    key: Path | None,
    *,
    client_ca: Path | None = None,
    verify_clients: VerifyClients = "none",
) -> ssl.SSLContext:
    """An SSLContext for accepting DICOM TLS connections."""
    if cert is None or key is None:
        raise TLSConfigError(
            "no certificate: set RADIANT_TLS_CERT and RADIANT_TLS_KEY or run `radiant tls ensure`"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot load the certificate or key: {exc}") from None
    if verify_clients != "none":
        if client_ca is None:
            raise TLSConfigError(
                "RADIANT_DICOM_TLS_CLIENT_CA is needed to check client certificates"
            )
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"cannot load the client CA: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED if verify_clients == "all" else ssl.CERT_OPTIONAL
    return context
