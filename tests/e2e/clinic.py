"""What the triage browser tests need beside the browser: the hospital's webhook receiver on
127.0.0.1, the appliance's API as a signed-in user (OAuth2 password flow), and studies sent over
C-STORE as a modality would (real test files with new UIDs, patients and study dates)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pydicom
from pydicom.uid import generate_uid

from tests.e2e.server import ApplianceServer

#: How long the API helpers wait for an analysis or for studies to arrive.
WAIT_S = 240.0


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got, and the status it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int
    at: float


@dataclass
class WebhookReceiver:
    """A hospital endpoint: answers each POST with the next scripted status (then 200) and
    records it. Use as a context manager so it is always stopped."""

    statuses: deque[int] = field(default_factory=deque)
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/fhir/Communication"

    def answer(self, *statuses: int) -> None:
        with self._lock:
            self.statuses.extend(statuses)

    def wait_for(self, count: int, timeout_s: float) -> list[Delivery]:
        """The deliveries once there are ``count`` of them (fails after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.deliveries) >= count:
                    return list(self.deliveries)
            time.sleep(0.2)
        raise AssertionError(
            f"the webhook got {len(self.deliveries)} POSTs within {timeout_s:.0f} s, "
            f"expected {count}"
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                    receiver.deliveries.append(
                        Delivery(
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                            time.time(),
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Api:
    """The appliance's REST API as one user (a bearer token from ``/api/auth/token``)."""

    def __init__(self, server: ApplianceServer, username: str, password: str) -> None:
        self.client = httpx.Client(base_url=server.url, verify=server.verify, timeout=60.0)
        answer = self.client.post(
            "/api/auth/token", data={"username": username, "password": password}
        )
        assert answer.status_code == 200, answer.text
        self.client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        answer = self.client.get(path, params=params)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def send(self, method: str, path: str, body: dict[str, Any], expect: int) -> Any:
        answer = self.client.request(method, path, json=body)
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None

    def studies(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("/api/studies", limit=200, **params)["items"]
        return items

    def study_ids(self, uids: Iterable[str], stable: bool = True) -> dict[str, str]:
        """Study id by Study Instance UID once every one of ``uids`` is listed (and complete:
        status ``stable``, when ``stable``)."""
        wanted = set(uids)
        deadline = time.monotonic() + WAIT_S
        found: dict[str, str] = {}
        while time.monotonic() < deadline:
            listed = {i["study_uid"]: i for i in self.studies()}
            found = {u: listed[u]["id"] for u in wanted if u in listed}
            if len(found) == len(wanted) and (
                not stable or all(listed[u]["status"] == "stable" for u in wanted)
            ):
                return found
            time.sleep(0.5)
        raise AssertionError(f"{len(found)} of {len(wanted)} studies arrived (and complete)")

    def analyse(self, study_id: str) -> dict[str, Any]:
        """Run a primary analysis and wait for it to finish."""
        accepted = self.send("POST", "/api/analysis", {"study_id": study_id}, 202)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            body: dict[str, Any] = self.get(f"/api/analysis/{accepted['analysis_id']}")
            if body["status"] not in ("queued", "running"):
                assert body["status"] in ("completed", "needs_review"), body
                return body
            time.sleep(0.5)
        raise AssertionError(f"analysis of {study_id} did not finish in {WAIT_S:.0f} s")

    def close(self) -> None:
        self.client.close()


def copy_with_new_uids(
    paths: Sequence[Path], patient: str, study_date: str | None, description: str
) -> list[pydicom.Dataset]:
    """``paths`` as one new study of a new patient (``<patient>^Test``, MRN ``MRN-<patient>``)
    dated ``study_date`` (DICOM DA; None: no date), one series, new UIDs."""
    study_uid, series_uid = generate_uid(), generate_uid()
    out: list[pydicom.Dataset] = []
    for number, path in enumerate(paths, start=1):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName = f"{patient}^Test"
        ds.PatientID = f"MRN-{patient}"
        ds.StudyDescription = description
        ds.InstanceNumber = number
        ds.StudyDate = study_date
        out.append(ds)
    return out


def c_store(
    server: ApplianceServer, datasets: Sequence[pydicom.Dataset], ae_title: str = "E2E_MODALITY"
) -> None:
    """C-STORE every dataset in one association with dcmtk's ``storescu``, as a modality sends
    a day's work; every C-STORE must be answered Success.

    Not pynetdicom's requestor: its reactor thread can take a fast C-STORE response off the
    queue before ``send_c_store`` waits for it ("Received unexpected C-STORE service message",
    pydicom/pynetdicom#435 and #875), and that send then ends in a DIMSE timeout (seen once in
    CI, the receiver idle and waiting for the next request)."""
    with tempfile.TemporaryDirectory(prefix="e2e-store-") as folder:
        paths = []
        for number, ds in enumerate(datasets):
            path = Path(folder) / f"{number:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(str(path))
        result = subprocess.run(
            ["storescu", "-v", "-aet", ae_title, "-aec", server.ae_title, "127.0.0.1",
             str(server.dicom_port), *paths],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
            env={**os.environ, "TCP_NODELAY": "1"},
            check=False,
        )  # fmt: skip
    answered = result.stdout.count("Received Store Response (Success)")
    assert result.returncode == 0 and answered == len(datasets), result.stdout[-3000:]


def sign_draft(doctor: Api, report_id: str) -> None:
    """Sign as a radiologist, accepting each item the safety layer flagged first."""
    answer = doctor.client.patch(
        f"/api/reports/{report_id}/finalize", json={"ai_findings_reviewed": True})
    if answer.status_code == 409:
        for item in answer.json().get("undecided", []):
            doctor.send("POST", f"/api/reports/{report_id}/review",
                        {"item": item, "decision": "accepted"}, 200)
        answer = doctor.client.patch(
            f"/api/reports/{report_id}/finalize", json={"ai_findings_reviewed": True})
    assert answer.status_code == 200, answer.text
