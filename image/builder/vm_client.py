"""The host side of the image test: HTTPS to the box pinned to its own certificate, the API
calls the checks make, and storescu as the modality (counting acknowledged instances)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PASSWORD = "vm test passphrase 42"  # noqa: S105 (a throwaway VM's administrator)


class Client:
    """HTTPS to the forwarded screen/API port, trusting exactly the box's certificate.

    The certificate is the trust anchor (partial chain) and the host name is checked: the box's
    own certificate names 127.0.0.1 (appliance/tls.py), which is where the port is forwarded."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.context: ssl.SSLContext | None = None
        self.fingerprint = ""

    def pin(self, pem: str) -> None:
        context = ssl.create_default_context(cadata=pem)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        self.context = context
        self.fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def open(
        self, path: str, token: str | None = None, data: bytes | None = None, timeout: float = 120
    ) -> Any:
        if self.context is None:
            raise RuntimeError("no certificate pinned yet")
        request = urllib.request.Request(self.url(path), data=data)  # noqa: S310 (https)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        return urllib.request.urlopen(request, timeout=timeout, context=self.context)  # noqa: S310

    def get_json(self, path: str, token: str | None = None, timeout: float = 120) -> Any:
        with self.open(path, token, timeout=timeout) as response:
            return json.loads(response.read())

    def get_bytes(self, path: str, token: str) -> bytes:
        with self.open(path, token, timeout=60) as response:
            return bytes(response.read())

    def check_served_certificate(self) -> None:
        """The certificate the port serves is the pinned one itself (not one it signed)."""
        assert self.context is not None
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw,
            self.context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            der = conn.getpeercert(binary_form=True) or b""
        served = hashlib.sha256(der).hexdigest()
        assert served == self.fingerprint, f"served {served}, pinned {self.fingerprint}"

    def no_redirect(self, path: str) -> urllib.error.HTTPError | None:
        """The HTTP error (a redirect) ``path`` answers, None on a 2xx."""
        opener = urllib.request.build_opener(
            NoRedirect, urllib.request.HTTPSHandler(context=self.context)
        )
        try:
            opener.open(self.url(path), timeout=60).close()
        except urllib.error.HTTPError as exc:
            return exc
        return None


def login(client: Client) -> str:
    form = urllib.parse.urlencode({"username": "admin", "password": PASSWORD}).encode()
    # Argon2 (memory-hard) under software emulation: minutes, not milliseconds.
    with client.open("/api/auth/token", data=form, timeout=600) as response:
        return str(json.loads(response.read())["access_token"])


def stored_instances(client: Client, token: str) -> dict[str, str]:
    """{SOP Instance UID: instance id} of every instance the API lists."""
    found: dict[str, str] = {}
    page = client.get_json("/api/studies?limit=500", token)
    for study in page["items"]:
        for series in client.get_json(f"/api/studies/{study['id']}/series", token):
            for item in client.get_json(f"/api/series/{series['id']}/instances", token):
                found[item["sop_instance_uid"]] = item["id"]
    return found


def readable(client: Client, token: str, instance_id: str, uid: str) -> bool:
    import pydicom

    data = client.get_bytes(f"/api/instances/{instance_id}/file", token)
    return str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID) == uid


def study_copy(source: Path, dest: Path, tag: str) -> dict[Path, str]:
    """The source series with fresh Study/Series/SOP Instance UIDs: {file: SOP UID}."""
    import pydicom
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    files: dict[Path, str] = {}
    for path in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        uid = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.AccessionNumber = tag[:16]
        target = dest / path.name
        ds.save_as(target)
        files[target] = uid
    return files


class Sender:
    """storescu over the forwarded port; counts the acknowledged files as they come."""

    def __init__(self, port: int, files: dict[Path, str]) -> None:
        self.files = files
        self.acked: list[str] = []
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [
                "storescu",
                "-v",
                "-aet",
                "VMTEST",
                "-aec",
                "RADIANT",
                "127.0.0.1",
                str(port),
                *map(str, files),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        current: Path | None = None
        for line in self.process.stdout:
            self.output.append(line)
            if "Sending file:" in line:
                current = Path(line.split("Sending file:", 1)[1].strip())
            elif "Received Store Response" in line and "(Success)" in line and current:
                self.acked.append(self.files[current])
                current = None

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return code


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
