"""Critical alert notifications to the hospital: a signed FHIR ``Communication`` posted to the
site's webhook, retried from a persisted outbox until the receiver accepts it.

The outbox row is written in the alert's own transaction (:func:`queue`), so no alert is raised
without its notification, whatever happens next. :func:`deliver_due` posts the rows that are due
and reschedules failures with exponential backoff; :class:`WebhookNotifier` runs it in a thread
while a webhook is configured and the box is online. Queueing, delivery and expiry are audited.

The body follows FHIR R4 ``Communication`` (category ``alert``, priority ``stat``): it names the
study by its DICOM Study Instance UID (``urn:dicom:uid`` identifier of an ``ImagingStudy``), the
box as sender, and the model's hedged reasons marked UNVERIFIED with the decision-support
disclaimer; no patient name, identifier or birth date.

Signature: ``X-Radiant-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is HMAC-SHA256
(RFC 2104, key the shared secret) over ``<t>.`` followed by the exact body bytes. A receiver
recomputes it, compares in constant time and refuses timestamps far from its clock (replay).
``Communication.id`` is stable across retries, so a receiver de-duplicates deliveries by it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlite_utils

from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.db.connection import ConnectionPool, transaction
from appliance.db.rows import fetch_one, iso, new_id, now_iso, utc_now
from appliance.logs import get_logger

log = get_logger("radiant.triage.notify")
SYSTEM = Actor.system("triage")
SIGNATURE_HEADER = "X-Radiant-Signature"
CONTENT_TYPE = "application/fhir+json"


@dataclass(frozen=True)
class AlertWording:
    """The words of the alert in the site's report language (the composition root builds them
    from the report catalog); ``tag`` is the BCP 47 tag of FHIR ``Resource.language``."""

    tag: str = "en-US"
    text: str = (
        "Possible critical finding flagged by AI decision support (UNVERIFIED) on a "
        "{modalities} study. Call the radiologist."
    )
    reasons: str = "Reasons given: {reasons}"
    disclaimer: str = (
        "AI decision support only, not a diagnosis: UNVERIFIED until a radiologist reviews "
        "the study."
    )
    imaging: str = "imaging"


ENGLISH = AlertWording()
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/communication-category"
#: Delivery defaults: first retry after 30 s, doubling up to 10 min; give up after 24 h.
RETRY_FIRST_S = 30.0
RETRY_MAX_S = 600.0
MAX_AGE_S = 24 * 3600.0
TIMEOUT_S = 10.0
BATCH = 20


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how notifications go. ``url`` must be HTTPS except on a loopback host."""

    url: str
    secret: bytes
    sender: str  # the box's identifier, FHIR Communication.sender
    wording: AlertWording = ENGLISH  # the site's report language: the text and the note
    timeout_s: float = TIMEOUT_S
    retry_first_s: float = RETRY_FIRST_S
    retry_max_s: float = RETRY_MAX_S
    max_age_s: float = MAX_AGE_S

    def __post_init__(self) -> None:
        check_url(self.url)
        if len(self.secret) < 16:
            raise ValueError("the webhook secret must be at least 16 bytes")


def check_url(url: str) -> None:
    """Refuse a webhook URL that would send alerts in clear beyond this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("the webhook URL must be an absolute http(s) URL")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("the webhook URL must use HTTPS (plain HTTP only to this machine)")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: bytes, header: str, body: bytes, *, now: float, tolerance_s: float = 300
) -> bool:
    """What a receiver does: True when ``header`` signs ``body`` and its time is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def queue(db: sqlite_utils.Database, alert_id: str, study_id: str) -> str:
    """Put the notification of a new alert in the outbox (inside the caller's transaction);
    audited ``triage.notify_queue``. Returns the notification id."""
    notification_id = new_id()
    now = now_iso()
    db.execute(
        "INSERT INTO triage_notifications (id, alert_id, study_id, status, attempts,"
        " created_at, next_attempt_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)",
        (notification_id, alert_id, study_id, now, now),
    )
    audit.record(
        db,
        SYSTEM,
        "triage.notify_queue",
        object_type="notification",
        object_id=notification_id,
        detail={"alert_id": alert_id, "study_id": study_id},
    )
    return notification_id


def communication(
    db: sqlite_utils.Database,
    notification_id: str,
    sender: str,
    wording: AlertWording = ENGLISH,
) -> dict[str, Any]:
    """The FHIR R4 Communication of one queued notification, in the site's report language
    (the model's reasons as the model wrote them)."""
    row = fetch_one(
        db,
        "SELECT n.id, n.alert_id, n.created_at, s.study_uid, s.modalities, a.urgency_detail"
        " FROM triage_notifications n JOIN triage_alerts t ON t.id = n.alert_id"
        " JOIN studies s ON s.id = n.study_id JOIN analyses a ON a.id = t.analysis_id"
        " WHERE n.id = ?",
        (notification_id,),
    )
    if row is None:
        raise LookupError(f"notification {notification_id} not found")
    detail = json.loads(row["urgency_detail"]) if row["urgency_detail"] else {}
    reasons = [str(r) for r in detail.get("reasons", [])] if isinstance(detail, dict) else []
    modalities = (row["modalities"] or "").replace("\\", ", ")
    text = wording.text.format(modalities=modalities or wording.imaging)
    if reasons:
        text += " " + wording.reasons.format(reasons=" ".join(reasons))
    return {
        "resourceType": "Communication",
        "id": row["id"],
        "language": wording.tag,
        "identifier": [{"system": "urn:radiantai:alert", "value": row["alert_id"]}],
        "status": "completed",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "alert"}]}],
        "priority": "stat",
        "about": [
            {
                "type": "ImagingStudy",
                "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{row['study_uid']}"},
            }
        ],
        "sender": {
            "type": "Device",
            "identifier": {"system": "urn:radiantai:box", "value": sender},
        },
        "sent": now_iso(),
        "payload": [{"contentString": text}],
        "note": [{"text": wording.disclaimer}],
    }


def _backoff(config: WebhookConfig, attempts: int) -> float:
    return float(min(config.retry_max_s, config.retry_first_s * 2 ** max(0, attempts - 1)))


def _due(db: sqlite_utils.Database, limit: int) -> list[tuple[str, str, str, int]]:
    cursor = db.execute(
        "SELECT id, alert_id, created_at, attempts FROM triage_notifications"
        " WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
        (now_iso(), limit),
    )
    return [(r[0], r[1], r[2], int(r[3])) for r in cursor.fetchall()]


def _expire(db: sqlite_utils.Database, notification_id: str, alert_id: str) -> None:
    with transaction(db):
        db.execute(
            "UPDATE triage_notifications SET status = 'expired'"
            " WHERE id = ? AND status = 'pending'",
            (notification_id,),
        )
        audit.record(
            db,
            SYSTEM,
            "triage.notify_expire",
            object_type="notification",
            object_id=notification_id,
            outcome="failure",
            detail={"alert_id": alert_id},
        )


def _post(client: httpx.Client, config: WebhookConfig, body: bytes) -> str | None:
    """POST once; None when the receiver accepted (2xx), else a short reason (no body echo)."""
    headers = {
        "Content-Type": CONTENT_TYPE,
        SIGNATURE_HEADER: sign(config.secret, int(time.time()), body),
    }
    try:
        response = client.post(config.url, content=body, headers=headers, timeout=config.timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: the receiver could not be reached"
    if 200 <= response.status_code < 300:
        return None
    return f"the receiver answered HTTP {response.status_code}"


def deliver_due(db: sqlite_utils.Database, client: httpx.Client, config: WebhookConfig) -> int:
    """Post every due notification once; returns how many were delivered now."""
    delivered = 0
    oldest = iso(utc_now() - timedelta(seconds=config.max_age_s))
    for notification_id, alert_id, created_at, attempts in _due(db, BATCH):
        if created_at < oldest:
            _expire(db, notification_id, alert_id)
            continue
        message = communication(db, notification_id, config.sender, config.wording)
        body = json.dumps(message, separators=(",", ":")).encode()
        failure = _post(client, config, body)
        with transaction(db):
            if failure is None:
                db.execute(
                    "UPDATE triage_notifications SET status = 'delivered', attempts = ?,"
                    " delivered_at = ?, last_error = NULL WHERE id = ?",
                    (attempts + 1, now_iso(), notification_id),
                )
                audit.record(
                    db,
                    SYSTEM,
                    "triage.notify_deliver",
                    object_type="notification",
                    object_id=notification_id,
                    detail={"alert_id": alert_id, "attempts": attempts + 1},
                )
                delivered += 1
            else:
                wait = _backoff(config, attempts + 1)
                db.execute(
                    "UPDATE triage_notifications SET attempts = ?, last_error = ?,"
                    " next_attempt_at = ? WHERE id = ?",
                    (
                        attempts + 1,
                        failure,
                        iso(utc_now() + timedelta(seconds=wait)),
                        notification_id,
                    ),
                )
                log.warning(
                    "alert notification %s not delivered (attempt %d, next in %.0f s): %s",
                    notification_id,
                    attempts + 1,
                    wait,
                    failure,
                )
    return delivered


class WebhookNotifier:
    """A thread that delivers due notifications every ``interval_s`` while ``online()``."""

    def __init__(
        self,
        pool: ConnectionPool,
        config: WebhookConfig,
        online: Callable[[], bool],
        *,
        interval_s: float = 5.0,
    ) -> None:
        self.pool = pool
        self.config = config
        self.online = online
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="triage-notify", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Deliver now (a new alert was raised)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.timeout_s + 5)

    def _loop(self) -> None:
        with httpx.Client(verify=True, follow_redirects=False) as client:
            while not self._stop.is_set():
                try:
                    if self.online():
                        deliver_due(self.pool.get(), client, self.config)
                except Exception:  # the loop must outlive any one bad round
                    log.exception("alert notification round failed")
                self._wake.wait(self.interval_s)
                self._wake.clear()
