"""Fuzz targets: each takes one input and raises :class:`Defect` (or any unexpected exception)
when the code under test misbehaves. Expected refusals (a protocol error, a rejected instance,
an invalid DICOMDIR, a refused zip entry) are not defects. Run by ``tests/fuzz/run.py``
(atheris, coverage-guided) and replayed by the tests."""

from __future__ import annotations

import io
import socket
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from appliance.audit.models import Actor
from appliance.config import Settings, ensure_secret_key, prepare_data_dir
from appliance.context import AppContext
from appliance.db.connection import ConnectionPool
from appliance.db.migrate import apply_migrations
from appliance.dicom import dimse, ul
from appliance.dicom.association_policy import Policy
from appliance.dicom.frontend import Frontend
from appliance.dicom.gate import Connection
from appliance.dicom.media.dicomdir import DicomdirInvalid, plan_dicomdir
from appliance.dicom.reading import Rejected, read_instance
from appliance.dicom.scan import scan_instance
from appliance.studies.upload import UploadLimits, UploadSession

CT = "1.2.840.10008.5.1.4.1.1.2"
CR = "1.2.840.10008.5.1.4.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


class Defect(Exception):
    """The code under test broke a rule the target checks."""


# -- Upper Layer decoders ---------------------------------------------------------------------


def pdu(data: bytes) -> None:
    """The PDU and command-set decoders of :mod:`appliance.dicom.ul`: the first byte picks one;
    only :class:`ul.ProtocolError` may come out."""
    if not data:
        return
    body = data[1:]
    decoders: list[Callable[[bytes], object]] = [
        ul.decode_associate_rq,
        ul.decode_associate_ac,
        ul.decode_p_data,
        dimse.decode_command,
    ]
    try:
        if data[0] == 0xFF and len(body) >= ul.PDU_HEADER:
            ul.parse_header(body[: ul.PDU_HEADER])
            return
        decoded = decoders[data[0] % len(decoders)](body)
        if isinstance(decoded, list):
            for pdv in decoded:
                if isinstance(pdv, ul.PDV) and pdv.is_command and pdv.is_last:
                    dimse.decode_command(pdv.data)
    except ul.ProtocolError:
        return


# -- the whole front end over a socket pair ---------------------------------------------------


class _Services:
    """Counts what the front end asks; a C-STORE's data set goes through the real reader."""

    def __init__(self) -> None:
        self.stored = 0

    def refuse(self, calling_ae: str, ip: str, reason: str) -> None:
        pass

    def established(self, calling_ae: str, ip: str) -> None:
        pass

    def store(self, data: bytes, calling_ae: str, ip: str) -> tuple[int, str | None]:
        try:
            read_instance(data)
        except Rejected as exc:
            return 0xC000, exc.reason[:64]
        self.stored += 1
        return 0x0000, None

    def ended(self) -> None:
        pass


POLICY = Policy(
    storage_classes=frozenset({CT, CR}),
    storage_syntaxes=SYNTAXES,
    relayed_classes=frozenset(),
    max_pdu=16384,
    artim_s=2.0,
    idle_s=2.0,
)


def frontend(data: bytes) -> None:
    """Feed ``data`` to a native association as a peer would, then close our sending side:
    the front end must answer or abort, end the connection, and raise nothing."""
    server, client = socket.socketpair()
    front = Frontend("127.0.0.1", 0, POLICY, _Services(), relay_to=lambda: None)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            front._serve_connection(Connection(server, "127.0.0.1", time.monotonic() + 5))
        except BaseException as exc:
            failure.append(exc)
        finally:
            server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client.settimeout(10)
        try:
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass
        except OSError:
            pass  # the front end aborted and closed before taking everything: allowed
    finally:
        client.close()
    thread.join(10)
    if thread.is_alive():
        raise Defect("the front end did not end the connection")
    if failure:
        raise failure[0]


# -- the fast header scan against the full reader ---------------------------------------------


def scan(data: bytes) -> None:
    """The fast scan never accepts what the full reader refuses, and when it answers its values
    equal the full reader's; neither raises anything but a refusal."""
    fast = scan_instance(data)
    try:
        _, full = read_instance(data)
    except Rejected:
        if fast is not None:
            raise Defect("the fast scan accepted an instance the full reader refuses") from None
        return
    if fast is not None and fast != full:
        raise Defect(f"the fast scan and the full reader disagree: {fast} != {full}")


# -- the DICOMDIR walker ----------------------------------------------------------------------

_MEDIA = Path(tempfile.mkdtemp(prefix="fuzz-media-"))


def dicomdir(data: bytes) -> None:
    """The DICOMDIR on a medium: planned or refused as invalid, never an exception."""
    path = _MEDIA / "DICOMDIR"
    path.write_bytes(data)
    try:
        plan_dicomdir(_MEDIA, path, 64 << 20)
    except DicomdirInvalid:
        return


# -- the zip upload reader --------------------------------------------------------------------

_UPLOAD: UploadSession | None = None


def _upload_session() -> UploadSession:
    global _UPLOAD
    if _UPLOAD is None:
        root = Path(tempfile.mkdtemp(prefix="fuzz-upload-"))
        settings = Settings(data_dir=root / "data")
        prepare_data_dir(settings)  # as appliance.app.prepare, without importing the web app
        pool = ConnectionPool(settings.db_path, settings.db_busy_timeout_ms)
        apply_migrations(pool.get())
        ctx = AppContext.build(settings, pool, ensure_secret_key(settings))
        _UPLOAD = UploadSession(
            ingestor=ctx.ingestor,
            actor=Actor.system("fuzz"),
            limits=UploadLimits(max_total_bytes=8 << 20, max_archive_bytes=32 << 20),
            work_dir=root,
            boundary=b"fuzz",
        )
    return _UPLOAD


def zip_upload(data: bytes) -> None:
    """A zip archive in an upload: every entry stored, quarantined or refused with a reason;
    never an exception."""
    session = _upload_session()
    path = session.work_dir / "fuzz.zip"
    path.write_bytes(data)
    session.results.clear()
    session._expand(path, "fuzz.zip")
    for result in session.results:
        if not result.reason and result.outcome not in ("stored", "duplicate"):
            raise Defect(f"an entry was {result.outcome} without a reason")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pdu": pdu,
    "frontend": frontend,
    "scan": scan,
    "dicomdir": dicomdir,
    "zip_upload": zip_upload,
}


def zip_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()
