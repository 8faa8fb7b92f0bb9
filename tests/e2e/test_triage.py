"""Triage and a day's worklist in Debian's Chromium against the real appliance (issue 18).

``test_critical_finding_alerts_every_screen``: the OpenAI-protocol test server answers an acute
subdural hematoma for the head CT. The study is flagged critical, sorted first above newer
routine studies, the alert banner shows on the technician's and on a radiologist's screen (two
browser contexts at once), stays on one screen while the other snoozes it and comes back
there by itself with the tone after RADIANT_TRIAGE_REALERT_S, is acknowledged by
name (audited) and goes from both; the hospital's webhook (a receiver on 127.0.0.1 that first
answers 503) gets the signed FHIR Communication once the box is online, retried until accepted.
A routine answer on another study raises nothing.

``test_day_of_thirty_studies_in_the_table``: 30+ studies over C-STORE (real test files with new
UIDs, patients and study dates); the table view shows 12+ rows of 48 px at 1280x800, sorts by
urgency, arrival, study date and status, each filter shows exactly its studies, a tapped chip
explains itself, and the touch-target and no-horizontal-scroll checks pass."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.ai_server import CT_HEAD, Scripted, chat_completion
from tests.dicom_files import instance_files
from tests.e2e.browser import VIEWPORT
from tests.e2e.clinic import Api, WebhookReceiver, c_store, copy_with_new_uids, sign_draft
from tests.e2e.server import ApplianceServer, start_appliance, stop_appliance
from tests.e2e.test_day import PASSWORD, field, open_screen, sign_in, sign_out
from tests.e2e.worklist_screen import (
    POLL_MS,
    banner,
    choose,
    rows,
    second_screen,
    shown_ids,
    tones,
)

pytestmark = pytest.mark.e2e
SECRET = "e2e webhook shared secret, 32+ bytes long"
#: Texts cut off: the table's cells (not the chips, which may run out of room) and the side
#: panel's field labels, values and switch labels.
TRUNCATED_JS = """() => Array.from(document.querySelectorAll(
    '[data-testid=study-row] > div:not(.row), .q-field__label, .q-field__native > span,'
    + ' .q-field__native, .q-toggle__label, [data-testid=worklist-count]'))
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 0.5)
  .map(e => e.innerText || e.value || e.getAttribute('placeholder'))"""
LONG_MS = 240_000
REALERT_S = 30  # the shortest the setting allows
Shot = Callable[[Page, str], Path]


def answer(findings: list[dict[str, Any]], **extra: Any) -> str:
    """A MedGemma-style answer in the JSON the primary prompt asks for (ai/prompts)."""
    body = {"findings": findings, **extra}
    return "<unused94>thought\nReading.<unused95>```json\n" + json.dumps(body) + "\n```"


SUBDURAL = answer(
    [{
        "description": "Acute subdural hematoma over the left convexity with midline shift, "
        "possibly requires surgery.",
        "location": "left convexity",
        "impression": "Acute subdural hematoma.",
        "confidence": 0.85,
        "measurements": [{"name": "thickness", "value": 14, "unit": "mm"}],
        "slice": 14,
    }],
    urgency="critical",
    urgency_reason="Acute subdural hematoma with mass effect, possibly requires surgery.",
    overall_impression="Acute subdural hematoma over the left convexity.",
)
ROUTINE = answer(
    [{"description": "The lungs appear clear.", "location": "chest", "confidence": 0.7}],
    urgency="routine",
    urgency_reason="No finding that needs action.",
    overall_impression="No acute abnormality is seen.",
)
PNEUMOTHORAX = answer(
    [{"description": "A small right apical pneumothorax may be present.",
      "location": "right apex", "confidence": 0.6}],
    urgency="urgent",
    urgency_reason="Possible small pneumothorax.",
    overall_impression="Possible small right apical pneumothorax.",
)


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def appliance_server(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver
) -> Iterator[ApplianceServer]:
    """The conftest's appliance, with the hospital webhook pointing at this module's receiver
    (its port is only known once the receiver listens)."""
    server = start_appliance(
        tmp_path_factory.mktemp("appliance"),
        {
            "RADIANT_TRIAGE_WEBHOOK_URL": webhook.url,
            "RADIANT_TRIAGE_WEBHOOK_SECRET": SECRET,
            "RADIANT_TRIAGE_REALERT_S": str(REALERT_S),
        },
    )
    try:
        for name, role in (("tech", "technician"), ("doctor", "radiologist"), ("boss", "admin")):
            server.add_user(name, role, PASSWORD)
        yield server
    finally:
        stop_appliance(server)


@pytest.fixture(scope="module")
def api(appliance_server: ApplianceServer) -> Iterator[dict[str, Api]]:
    users = {name: Api(appliance_server, name, PASSWORD) for name in ("tech", "doctor", "boss")}
    try:
        yield users
    finally:
        for user in users.values():
            user.close()


def verify_signature(header: str, body: bytes) -> bool:
    """What the hospital does (appliance/triage/notify.py): ``t=<unix>,v1=<hex>`` with hex the
    HMAC-SHA256 of ``<t>.`` + body under the shared secret, and a recent ``t``."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return abs(time.time() - int(parts["t"])) < 300 and hmac.compare_digest(
        expected.hexdigest(), parts["v1"]
    )


def test_critical_finding_alerts_every_screen(
    appliance_server: ApplianceServer,
    api: dict[str, Api],
    webhook: WebhookReceiver,
    page: Page,
    browser: Browser,
    shot: Shot,
    assert_touch_targets: Callable[[Page], int],
    no_horizontal_scroll: Callable[[Page], None],
) -> None:
    server = appliance_server
    tech, boss = api["tech"], api["boss"]
    webhook.answer(503)  # the hospital is down at first

    # The head CT first, then two newer radiographs of other patients.
    ct = copy_with_new_uids(sorted(CT_HEAD.glob("*.dcm")), "Okafor", "20260101", "CT head")
    routine = [copy_with_new_uids(instance_files("xr_chest_cr_dx"), name, None, "Chest")
               for name in ("Mensah", "Banda")]
    c_store(server, ct)
    time.sleep(1.5)  # arrival order is by the arrival time
    for study in routine:
        c_store(server, study)
    ids = tech.study_ids([str(ct[0].StudyInstanceUID)]
                         + [str(s[0].StudyInstanceUID) for s in routine])
    ct_id = ids[str(ct[0].StudyInstanceUID)]
    routine_id, newer_id = (ids[str(s[0].StudyInstanceUID)] for s in routine)

    # Two screens at once: the technician's and a radiologist's.
    sign_in(page, "tech")
    open_screen(page, "/")
    doctor = second_screen(browser, server, "doctor")
    try:
        open_screen(doctor, "/")
        cards = page.get_by_test_id("study-card")
        expect(cards).to_have_count(3, timeout=POLL_MS)
        assert cards.first.get_attribute("data-study") == newer_id  # newest arrival first

        # A routine answer raises nothing: no banner, no urgency chip.
        server.ai.script(Scripted(body=chat_completion(ROUTINE)))
        asked = len(server.ai.requests)
        tech.analyse(routine_id)
        assert len(server.ai.requests) > asked
        routine_card = page.locator(f"[data-testid=study-card][data-study='{routine_id}']")
        expect(routine_card).to_contain_text("AI analysed", timeout=POLL_MS)
        expect(routine_card).not_to_contain_text("critical")
        expect(routine_card).not_to_contain_text("urgent")
        page.wait_for_timeout(7_000)  # more than one banner poll
        for screen in (page, doctor):
            expect(banner(screen)).to_have_count(0)
        assert tech.get("/api/triage/alerts") == []
        assert tech.get(f"/api/studies/{routine_id}/urgency")["level"] == "routine"

        # The subdural hematoma, analysed from the technician's screen.
        server.ai.script(Scripted(body=chat_completion(SUBDURAL)))
        open_screen(page, f"/analysis/{ct_id}")
        field(page, "indication").fill("Fall, drowsy; exclude an intracranial bleed.")
        page.get_by_test_id("run-analysis").click()
        expect(page.get_by_test_id("finding").first).to_be_visible(timeout=LONG_MS)
        for screen in (page, doctor):
            expect(banner(screen)).to_be_visible(timeout=POLL_MS)
            expect(banner(screen)).to_contain_text("Call the radiologist now.")
            expect(banner(screen)).to_contain_text("CT study received")
            assert tones(screen) >= 1  # the tone sounded
        urgency = tech.get(f"/api/studies/{ct_id}/urgency")
        assert urgency["level"] == "critical"
        assert urgency["verification_flag"] == "UNVERIFIED"

        # Worklist: the critical study first, above the newer routine ones, with its chip.
        open_screen(page, "/")
        expect(cards).to_have_count(3, timeout=POLL_MS)
        expect(cards.first).to_have_attribute("data-study", ct_id)
        expect(cards.first.get_by_test_id("status-chip").first).to_contain_text(
            "critical (AI)")
        expect(banner(page)).to_be_visible(timeout=POLL_MS)
        page.evaluate("document.fonts.ready.then(() => true)")
        shot(page, "14-critical-alert")
        no_horizontal_scroll(page)
        assert assert_touch_targets(page) >= 1
        # The chip explains itself when tapped.
        cards.first.get_by_test_id("status-chip").first.click()
        expect(page.get_by_text("may need action within minutes").first).to_be_visible()
        page.keyboard.press("Escape")
        # "complete" says how long the box waits for more images (RADIANT_STABLE_AGE_S: 1 s).
        cards.first.get_by_test_id("status-chip").filter(has_text="complete").click()
        expect(page.get_by_text("No new image has arrived for 1 s").first).to_be_visible()
        page.keyboard.press("Escape")

        # Acknowledging needs a name; without one the banner stays.
        banner(page).get_by_test_id("alert-ack").click()
        expect(page.get_by_text("type your name").first).to_be_visible(timeout=POLL_MS)
        expect(banner(page)).to_be_visible()

        # The radiologist snoozes it; unacknowledged, it stays on the technician's screen, and
        # comes back by itself on the radiologist's, with the tone, after REALERT_S.
        sounded = tones(doctor)
        doctor.get_by_test_id("alert-later").click()
        snoozed = time.monotonic()
        expect(banner(doctor)).to_have_count(0)
        page.wait_for_timeout(7_000)
        expect(banner(page)).to_be_visible()
        expect(banner(doctor)).to_have_count(0)
        expect(banner(doctor)).to_be_visible(timeout=(REALERT_S + 60) * 1000)
        assert time.monotonic() - snoozed >= REALERT_S - 1
        assert tones(doctor) > sounded

        # The technician acknowledges by name: gone from both screens.
        field(page, "alert-name").fill("Amina Diallo")
        banner(page).get_by_test_id("alert-ack").click()
        expect(banner(page)).to_have_count(0, timeout=POLL_MS)
        expect(banner(doctor)).to_have_count(0, timeout=POLL_MS)
    finally:
        doctor.context.close()
    assert tech.get("/api/triage/alerts") == []
    acks = boss.get("/api/audit", action="triage.alert_ack")["items"]
    assert len(acks) == 1, acks
    assert acks[0]["actor"] == "tech" and acks[0]["detail"]["name"] == "Amina Diallo"
    assert acks[0]["detail"]["study_id"] == ct_id
    # The administrator reads it on the audit screen, filtered by the action's prefix.
    sign_out(page)  # waits for the sign-in screen: a goto during sign-out's own navigation aborts
    sign_in(page, "boss")
    open_screen(page, "/system")
    page.get_by_label("Action (e.g. report. or auth.login)").fill("triage.")
    ack_row = page.locator("tr", has_text="triage.alert_ack")
    expect(ack_row).to_have_count(1, timeout=POLL_MS)
    expect(ack_row).to_contain_text("tech")
    expect(ack_row).to_contain_text(f"alert {acks[0]['object_id']}")
    expect(page.locator("tr", has_text="triage.alert_raise")).to_have_count(1)

    # The hospital: nothing while the box is offline; online, the 503 is retried until the
    # signed Communication is accepted.
    assert webhook.deliveries == []
    boss.send("POST", "/api/system/mode", {"mode": "online", "confirm": True}, 200)
    first, second = webhook.wait_for(2, timeout_s=180)[:2]
    assert (first.answered, second.answered) == (503, 200)
    assert second.at - first.at >= 20  # backed off, not hammered
    for delivery in (first, second):
        assert delivery.headers["content-type"] == "application/fhir+json"
        assert verify_signature(delivery.headers["x-radiant-signature"], delivery.body)
    message = json.loads(second.body)
    assert message["resourceType"] == "Communication"
    assert message["id"] == json.loads(first.body)["id"]  # the receiver de-duplicates by it
    assert message["priority"] == "stat"
    assert message["category"][0]["coding"][0]["code"] == "alert"
    assert message["about"][0]["identifier"]["value"] == f"urn:oid:{ct[0].StudyInstanceUID}"
    assert "UNVERIFIED" in message["payload"][0]["contentString"]
    for private in ("Okafor", "MRN-"):
        assert private not in second.body.decode()
    delivered = boss.get("/api/audit", action="triage.notify_deliver")["items"]
    assert [row["detail"]["attempts"] for row in delivered] == [2]
    boss.send("POST", "/api/system/mode", {"mode": "offline"}, 200)


def test_day_of_thirty_studies_in_the_table(
    appliance_server: ApplianceServer,
    api: dict[str, Api],
    page: Page,
    shot: Shot,
    assert_touch_targets: Callable[[Page], int],
    no_horizontal_scroll: Callable[[Page], None],
    console_errors: list[str],
) -> None:
    server = appliance_server
    tech, doctor = api["tech"], api["doctor"]
    today = time.strftime("%Y%m%d", time.gmtime())  # the site's time zone is UTC
    small = instance_files("dicomdir_pcir_3patients_prior_current")
    dates = [today] * 4 + [None, "19010101"] + [f"20{10 + n % 15:02d}{1 + n % 12:02d}15"
                                              for n in range(26)]
    day: dict[str, str | None] = {}  # study date by Study Instance UID
    studies = []
    for n, study_date in enumerate(dates):
        files = small[3 * (n % 3): 3 * (n % 3) + 1 + n % 3]  # 1 to 3 small images
        study = copy_with_new_uids(files, f"Day{n:02d}", study_date, f"Study {n}")
        studies.append(study)
        day[str(study[0].StudyInstanceUID)] = study_date
    # Four chest radiographs the AI reads: urgent, AI draft, handed over, signed.
    readings = {name: copy_with_new_uids(instance_files("xr_chest_cr_dx"), name, "20240601",
                                         "Chest") for name in ("Urgent", "Draft", "Handed",
                                                               "Signed")}
    for reading in readings.values():
        day[str(reading[0].StudyInstanceUID)] = "20240601"
    c_store(server, [ds for study in (*studies, *readings.values()) for ds in study])
    ids = tech.study_ids(day)
    mine = set(ids.values())
    assert len(mine) >= 36
    by_name = {name: ids[str(study[0].StudyInstanceUID)] for name, study in readings.items()}
    today_ids = {ids[uid] for uid, d in day.items() if d == today}

    server.ai.script(Scripted(body=chat_completion(PNEUMOTHORAX)))
    tech.analyse(by_name["Urgent"])
    reports = {}
    for name in ("Draft", "Handed", "Signed"):
        server.ai.script(Scripted(body=chat_completion(ROUTINE)))
        analysis = tech.analyse(by_name[name])
        reports[name] = tech.send("POST", "/api/reports", {
            "study_id": by_name[name], "analysis_id": analysis["id"]}, 201)["id"]
    sign_draft(doctor, reports["Signed"])
    # One study arrived two days ago (the receiver cannot be sent back in time: its row is).
    old_arrival = ids[next(uid for uid, d in day.items() if d == "19010101")]
    with sqlite3.connect(server.data_dir / "radiant.db", timeout=30) as db:
        db.execute("UPDATE studies SET created_at = ? WHERE id = ?",
                   (time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00",
                                  time.gmtime(time.time() - 2 * 86400)), old_arrival))

    sign_in(page, "tech")
    open_screen(page, f"/report/{by_name['Handed']}")
    page.get_by_test_id("hand-over").click(timeout=30_000)
    expect(page.get_by_test_id("handed-over")).to_contain_text("Handed over by tech",
                                                                timeout=30_000)

    # The table: 48 px rows, at least 12 of them in view above the status bar.
    open_screen(page, "/")
    page.get_by_test_id("worklist-view").get_by_text("Table").click()
    everyone = tech.studies()
    listed = {item["id"]: item for item in everyone}
    order = shown_ids(page, [i["id"] for i in everyone])  # the API's default: urgency
    footer = page.locator(".q-footer").bounding_box()
    bottom = footer["y"] if footer else VIEWPORT["height"]
    boxes = [rows(page).nth(i).bounding_box() for i in range(len(order))]
    assert all(b is not None and abs(b["height"] - 48) < 0.6 for b in boxes), boxes[:3]
    in_view = [b for b in boxes if b and b["y"] >= 0 and b["y"] + b["height"] <= bottom + 0.5]
    assert len(in_view) >= 12, f"{len(in_view)} rows in view above y={bottom}"
    page.evaluate("document.fonts.ready.then(() => true)")
    shot(page, "15-worklist-table")
    no_horizontal_scroll(page)
    assert assert_touch_targets(page) >= 12

    # Sorting. Urgency first (the default): unreported critical, then urgent, then arrival.
    rank = {"critical": 2, "urgent": 1, "routine": 0}
    ranks = [rank[listed[i]["urgency"]] for i in order]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] >= 1
    assert order.index(by_name["Urgent"]) < order.index(by_name["Draft"])
    choose(page, "worklist-sort", "Arrival")
    shown_ids(page, sorted(listed, key=lambda i: listed[i]["created_at"], reverse=True))
    choose(page, "worklist-sort", "Study date")
    order = shown_ids(page, [i["id"] for i in tech.studies(sort="study_date")])
    dated = [listed[i]["study_date"] for i in order]
    known = [d for d in dated if d]
    assert known == sorted(known, reverse=True) and dated[: len(known)] == known, dated
    assert order[0] in today_ids
    choose(page, "worklist-sort", "Status")
    order = shown_ids(page, [i["id"] for i in tech.studies(sort="status")])
    states = [listed[i]["status"] for i in order]
    assert states == sorted(states)
    choose(page, "worklist-sort", "Urgency first")
    shown_ids(page, [i["id"] for i in everyone])

    # Each filter shows exactly its studies (among this test's, the API agreeing on the rest).
    expected = {
        "Unreported (not signed)": ("unreported", mine - {by_name["Signed"]}),
        "AI draft ready": ("draft_ready", {by_name["Draft"]}),
        "Handed over": ("handed_over", {by_name["Handed"]}),
        "Urgent or critical (AI)": ("urgent", {by_name["Urgent"]}),
        "Signed": ("signed", {by_name["Signed"]}),
    }
    for option, (status, want) in expected.items():
        choose(page, "filter-status", option)
        params = {"urgent": "true"} if status == "urgent" else {"status": status}
        agreed = {i["id"] for i in tech.studies(**params)}
        shown = set(shown_ids(page, agreed))
        assert shown & mine == want, option
        assert page.evaluate(TRUNCATED_JS) == [], option  # the chosen option reads in full
    choose(page, "filter-status", "All statuses")
    page.get_by_test_id("filter-today").click()
    shown = set(shown_ids(page, {i for i in listed if listed[i]["study_date"] == today}))
    assert shown & mine == today_ids and len(today_ids) == 4
    page.get_by_test_id("filter-today").click()
    page.get_by_test_id("filter-arrived-today").click()
    shown_ids(page, set(listed) - {old_arrival})
    page.get_by_test_id("filter-arrived-today").click()
    shown_ids(page, set(listed))

    # One report workflow chip per row, named as its filter: "AI draft ready" only on the
    # study with an unsigned AI draft, not on an analysis without a draft nor on a signed one.
    for name, chip, not_shown in (
        ("Urgent", "AI analysed", ("AI draft ready", "draft")),
        ("Draft", "AI draft ready", ("handed over", "final")),
        ("Handed", "handed over", ("AI draft ready", "final")),
        ("Signed", "final", ("AI draft ready", "handed over")),
    ):
        cells = page.locator(f"[data-testid=study-row][data-study='{by_name[name]}']")
        expect(cells.get_by_test_id("status-chip").filter(has_text=chip)).to_have_count(1)
        for other in not_shown:
            expect(cells.get_by_test_id("status-chip").filter(
                has_text=re.compile(f"^\\W*{other}$"))).to_have_count(0)

    # A status chip in a row explains itself when tapped (and does not open the study).
    row = page.locator(f"[data-testid=study-row][data-study='{by_name['Handed']}']")
    row.get_by_test_id("status-chip").filter(has_text="handed over").click()
    expect(page.get_by_text("The draft was handed over to a radiologist").first).to_be_visible()
    assert page.url.rstrip("/").endswith(server.url.split("//")[1]) or page.url.endswith("/")
    page.keyboard.press("Escape")
    # The table's row keeps to the chips that matter (no "complete", no "volume ready").
    expect(row.get_by_test_id("status-chip")).to_have_count(1)
    # Every cell reads in full: name, MRN, modalities, study date, arrival (with its time).
    cut = page.evaluate(TRUNCATED_JS)
    assert cut == [], f"cut off in the table: {cut}"
    no_horizontal_scroll(page)

    # In French too, the panel's labels and values and the table's cells read in full.
    page.get_by_test_id("lang-fr").click()
    expect(page.get_by_test_id("worklist-count")).to_contain_text("affichés", timeout=POLL_MS)
    page.get_by_test_id("worklist-view").get_by_text("Tableau").click()
    expect(rows(page).first).to_be_visible(timeout=POLL_MS)
    for option in ("Sans compte rendu signé", "Urgent ou critique (IA)", "Brouillon IA prêt"):
        choose(page, "filter-status", option)
        expect(page.get_by_test_id("filter-status")).to_contain_text(option)
        cut = page.evaluate(TRUNCATED_JS)
        assert cut == [], f"cut off in French: {cut}"
    no_horizontal_scroll(page)
    assert assert_touch_targets(page) >= 12
    assert console_errors == []
