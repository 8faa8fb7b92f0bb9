"""Critical alert notifications to a real webhook receiver on 127.0.0.1: the OpenAI-protocol test
server answers a subdural haematoma, the alert's FHIR Communication is queued with it, refused
deliveries are retried from the outbox with backoff, the delivered body is signed (HMAC-SHA256)
and holds no patient data, and nothing is sent while the box is offline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.bootstrap import alert_wording
from appliance.config import Settings
from appliance.triage import notify
from tests.ai_server import AIServer, Scripted, chat_completion, engine_settings
from tests.integration.test_triage import SUBDURAL, _analyse
from tests.reporting import ingest_ct
from tests.servers import free_port

pytestmark = pytest.mark.integration
Headers = Callable[[str], dict[str, str]]
SECRET = b"a-site-secret-of-32-bytes-length"


class Receiver:
    """The hospital's endpoint: answers the scripted statuses in turn, then 200; keeps bodies."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append((status, dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir/Communication"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(SUBDURAL))) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver([503]) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: AIServer, receiver: Receiver) -> Settings:
    """The served appliance posts to ``receiver`` (its first answer: 503) while online."""
    return engine_settings(
        tmp_path,
        server,
        triage_webhook_url=receiver.url,
        triage_webhook_secret=SECRET.decode(),
        ai_online_endpoint=server.url,  # something to go online to (sync/golive.py)
    )


def _config(url: str, **extra: Any) -> notify.WebhookConfig:
    return notify.WebhookConfig(url=url, secret=SECRET, sender="box-test-1", **extra)


def _notification(db: sqlite_utils.Database) -> dict[str, Any]:
    cursor = db.execute(
        "SELECT id, status, attempts, next_attempt_at, last_error FROM triage_notifications"
    )
    rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return dict(zip([c[0] for c in cursor.description], rows[0], strict=True))


def _actions(db: sqlite_utils.Database, prefix: str) -> list[str]:
    rows = db.execute(
        "SELECT action FROM audit_log WHERE action LIKE ? ORDER BY id", (prefix + "%",)
    ).fetchall()
    return [r[0] for r in rows]


def test_critical_alert_is_notified_signed_and_retried(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    ctx = app.state.ctx
    head = ingest_ct(ctx).study_id
    analysis = _analyse(client, as_role("technician"), head)
    assert analysis["urgency"] == "critical"

    # Queued with the alert, audited; nothing sent yet.
    queued = _notification(db)
    assert (queued["status"], queued["attempts"]) == ("pending", 0)
    assert _actions(db, "triage.notify") == ["triage.notify_queue"]

    # The receiver is down: the attempt is counted and the next one waits (backoff).
    down = _config(f"http://127.0.0.1:{free_port()}/hook")
    with httpx.Client() as http:
        assert notify.deliver_due(db, http, down) == 0
        failed = _notification(db)
        assert (failed["status"], failed["attempts"]) == ("pending", 1)
        assert "could not be reached" in failed["last_error"]
        assert failed["next_attempt_at"] > queued["next_attempt_at"]
        assert notify.deliver_due(db, http, down) == 0  # not due again before its backoff
        assert _notification(db)["attempts"] == 1

    db.execute("UPDATE triage_notifications SET next_attempt_at = created_at")
    with Receiver([503]) as receiver:
        online = threading.Event()
        notifier = notify.WebhookNotifier(
            app.state.ctx.pool, _config(receiver.url, retry_first_s=0), online.is_set,
            interval_s=0.05,
        )  # fmt: skip
        notifier.start()
        try:
            time.sleep(0.5)
            assert receiver.received == []  # offline: nothing leaves the box
            online.set()
            deadline = time.monotonic() + 30
            while _notification(db)["status"] != "delivered" and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            notifier.stop()

    delivered = _notification(db)
    assert (delivered["status"], delivered["attempts"]) == ("delivered", 3)
    assert [status for status, _, _ in receiver.received] == [503, 200]
    bodies = [json.loads(body) for _, _, body in receiver.received]
    assert bodies[0]["id"] == bodies[1]["id"] == delivered["id"]  # a stable id to de-duplicate
    _, headers, raw = receiver.received[-1]
    assert headers["Content-Type"] == "application/fhir+json"
    assert notify.verify(SECRET, headers[notify.SIGNATURE_HEADER], raw, now=time.time())
    assert not notify.verify(b"another-secret-16b", headers[notify.SIGNATURE_HEADER], raw,
                             now=time.time())  # fmt: skip
    assert not notify.verify(SECRET, headers[notify.SIGNATURE_HEADER], raw + b" ",
                             now=time.time())  # fmt: skip
    assert not notify.verify(SECRET, headers[notify.SIGNATURE_HEADER], raw,
                             now=time.time() + 3600)  # fmt: skip

    body = bodies[-1]
    assert body["resourceType"] == "Communication"
    assert (body["priority"], body["category"][0]["coding"][0]["code"]) == ("stat", "alert")
    study_uid = db.execute("SELECT study_uid FROM studies WHERE id = ?", (head,)).fetchone()[0]
    assert body["about"][0]["identifier"]["value"] == f"urn:oid:{study_uid}"
    assert body["sender"]["identifier"]["value"] == "box-test-1"
    text = body["payload"][0]["contentString"]
    assert "UNVERIFIED" in text and "radiologist" in text
    assert body["language"] == "en-US" and "UNVERIFIED" in body["note"][0]["text"]
    # A French site's hospital reads the same alert in French (the model's reasons as written).
    french = notify.communication(db, delivered["id"], "box-test-1", alert_wording("fr"))
    assert french["language"] == "fr-FR"
    assert french["payload"][0]["contentString"].startswith("Constatation critique possible")
    assert "Appelez le radiologue." in french["payload"][0]["contentString"]
    assert "NON VÉRIFIÉ" in french["note"][0]["text"]
    assert "radiologist" not in json.dumps(french, ensure_ascii=False)
    patient = db.execute(
        "SELECT p.mrn, p.last_name, p.first_name, p.birth_date FROM patients p"
        " JOIN studies s ON s.patient_id = p.id WHERE s.id = ?",
        (head,),
    ).fetchone()
    for value in patient:
        if value:
            assert str(value) not in raw.decode(), "patient data in the webhook"
    assert _actions(db, "triage.notify") == ["triage.notify_queue", "triage.notify_deliver"]


def test_the_served_appliance_delivers_only_while_online(
    app: FastAPI,
    client: TestClient,
    as_role: Headers,
    db: sqlite_utils.Database,
    receiver: Receiver,
) -> None:
    head = ingest_ct(app.state.ctx).study_id
    assert _analyse(client, as_role("technician"), head)["urgency"] == "critical"
    time.sleep(1.0)
    assert receiver.received == [] and _notification(db)["attempts"] == 0  # offline
    online = client.post(
        "/api/system/mode", json={"mode": "online", "confirm": True}, headers=as_role("admin")
    )
    assert online.status_code == 200, online.text
    db.execute("UPDATE triage_notifications SET next_attempt_at = created_at")
    deadline = time.monotonic() + 60
    while _notification(db)["status"] != "delivered" and time.monotonic() < deadline:
        if _notification(db)["attempts"] == 1:  # the 503: skip the 30 s backoff
            db.execute("UPDATE triage_notifications SET next_attempt_at = created_at")
        time.sleep(0.1)
    assert [status for status, _, _ in receiver.received] == [503, 200]
    _, headers, raw = receiver.received[-1]
    assert notify.verify(SECRET, headers[notify.SIGNATURE_HEADER], raw, now=time.time())


def test_old_notifications_expire_instead_of_being_sent_late(
    app: FastAPI, client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    head = ingest_ct(app.state.ctx).study_id
    _analyse(client, as_role("technician"), head)
    with Receiver([]) as receiver, httpx.Client() as http:
        assert notify.deliver_due(db, http, _config(receiver.url, max_age_s=0)) == 0
    assert receiver.received == []
    assert _notification(db)["status"] == "expired"
    assert _actions(db, "triage.notify") == ["triage.notify_queue", "triage.notify_expire"]


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("http://hospital.example/hook", SECRET),  # clear text beyond this machine
        ("ftp://127.0.0.1/hook", SECRET),
        ("/relative", SECRET),
        ("https://hospital.example/hook", b"short"),
    ],
)
def test_unsafe_webhook_settings_are_refused(url: str, secret: bytes) -> None:
    with pytest.raises(ValueError, match="webhook"):
        notify.WebhookConfig(url=url, secret=secret, sender="box")


def test_https_and_loopback_webhooks_are_accepted() -> None:
    for url in ("https://hospital.example/fhir/Communication", "http://127.0.0.1:8080/hook"):
        assert notify.WebhookConfig(url=url, secret=SECRET, sender="box").url == url
