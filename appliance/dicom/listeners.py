"""The sockets the receiver listens on, opened and closed together.

``RADIANT_DICOM_FRONTEND=native``: the native PS3.8 front end (:mod:`appliance.dicom.frontend`)
on the DICOM port (and a second one on ``RADIANT_DICOM_TLS_PORT``, PS3.15 Annex B), relaying
query/retrieve associations to the pynetdicom AE on an internal 127.0.0.1 port; ``pynetdicom``:
the pynetdicom AE on the port(s) itself.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

from appliance.config import Settings
from appliance.dicom.association_policy import Policy, Services
from appliance.dicom.frontend import Frontend

JOIN_TIMEOUT_S = 10.0


class Listeners:
    """The pynetdicom server(s) and native front end(s) of one receiver."""

    def __init__(self) -> None:
        self.server: ThreadedAssociationServer | None = None
        self.tls_server: ThreadedAssociationServer | None = None
        self.frontend: Frontend | None = None
        self.tls_frontend: Frontend | None = None
        self.internal_port: int | None = None
        self.address: tuple[str, int] = ("", 0)  # the last one tried (for an error message)

    def open(
        self,
        settings: Settings,
        ae: AE,
        handlers: list[EventHandlerType],
        context: ssl.SSLContext | None,
        policy: Callable[[], Policy],
        services: Services,
    ) -> None:
        """Listen; an OSError (port taken, ...) leaves :attr:`address` naming the one that
        failed and what was already opened to :meth:`close`."""
        self.address = (settings.dicom_host, settings.dicom_port)
        tls_port = settings.dicom_tls_port if context is not None else None
        if settings.dicom_frontend != "native":
            self.server = ae.start_server(self.address, block=False, evt_handlers=handlers)
            if tls_port is not None:
                self.address = (settings.dicom_host, tls_port)
                self.tls_server = ae.start_server(
                    self.address, block=False, evt_handlers=handlers, ssl_context=context
                )
            return
        # the pynetdicom AE serves what the front end relays, on a loopback-only port
        inner = ("127.0.0.1", 0)
        server = ae.start_server(inner, block=False, evt_handlers=handlers)
        assert server is not None  # block=False returns the server
        self.server = server
        self.internal_port = int(server.server_address[1])
        rules = policy()
        gate = rules.gate()  # one count of associations for both ports
        frontend = Frontend(
            settings.dicom_host,
            settings.dicom_port,
            rules,
            services,
            relay_to=lambda: self.internal_port,
            gate=gate,
        )
        frontend.start()
        self.frontend = frontend
        if tls_port is not None:
            self.address = (settings.dicom_host, tls_port)
            secure = Frontend(
                settings.dicom_host,
                tls_port,
                rules,
                services,
                relay_to=lambda: self.internal_port,
                ssl_context=context,
                client_cert_for_qr=settings.dicom_tls_verify_clients == "peers",
                gate=gate,
            )
            secure.start()
            self.tls_frontend = secure

    def close(self) -> None:
        """Close what :meth:`open` opened before it failed."""
        for frontend in (self.frontend, self.tls_frontend):
            if frontend is not None:
                frontend.stop(JOIN_TIMEOUT_S)
        self.frontend = self.tls_frontend = None
        for server in (self.server, self.tls_server):
            if server is not None:
                server.shutdown()
        self.server = self.tls_server = None

    def stop(self) -> bool:
        """Stop accepting, abort associations still open and wait for their threads; False
        when nothing was listening."""
        for frontend in (self.frontend, self.tls_frontend):
            if frontend is not None:
                frontend.stop(JOIN_TIMEOUT_S)
        self.frontend = self.tls_frontend = None
        tls_server, self.tls_server = self.tls_server, None
        if tls_server is not None:
            tls_server.shutdown()
            for assoc in list(tls_server.active_associations):
                if assoc.is_alive():
                    assoc.abort()
        server, self.server = self.server, None
        if server is None:
            return False
        server.shutdown()  # no new associations from here on
        active = list(server.active_associations)
        for assoc in active:
            if assoc.is_alive():
                assoc.abort()
        for assoc in active:
            assoc.join(JOIN_TIMEOUT_S)
        return True

    def listening(self, settings: Settings) -> bool:
        return self.server is not None and (
            self.frontend is not None or settings.dicom_frontend != "native"
        )

    def active(self) -> int:
        """Associations open now, on every listener."""
        server, frontend, secure = self.server, self.frontend, self.tls_frontend
        return (
            (len(server.active_associations) if server else 0)
            + (frontend.active if frontend else 0)
            + (secure.active if secure else 0)
        )

    def client_ip(self, assoc: Association) -> str:
        """The requestor's IP; for an association relayed by the front end, the real client's."""
        ip = str(assoc.requestor.address or "")
        if ip == "127.0.0.1":
            for frontend in (self.frontend, self.tls_frontend):
                relayed = frontend.relayed.get(int(assoc.requestor.port or 0)) if frontend else None
                if relayed is not None:
                    return relayed[0]
        return ip
