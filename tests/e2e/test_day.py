"""A clinic's day in Debian's Chromium against the real appliance: a technician imports the
DICOMDIR set from a USB stick, receives a head CT over the network, scrolls it in the viewer,
runs an analysis against the OpenAI-protocol test server and hands the draft over; a radiologist
edits, signs and exports the PDF; an administrator switches the box online. A screenshot per
screen (``just screenshots`` collects them) and the touch-target check on each.

The appliance serves HTTPS with its own certificate, which the browser trusts by its public key
alone; no screen of the day may trigger a Content-Security-Policy violation."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests import flag_answer
from tests.ai_server import Scripted, chat_completion
from tests.e2e.browser import wait_for_nicegui
from tests.e2e.clinic import c_store
from tests.e2e.server import ApplianceServer

pytestmark = pytest.mark.e2e
APPLIANCE_TLS = True
DATA = Path(__file__).resolve().parents[1] / "data"
DICOMDIR_SET = DATA / "dicomdir_pcir_3patients_prior_current"
CT_HEAD = DATA / "ct_ge_head_tilt18_varspacing"
PASSWORD = "a long day test passphrase"
LONG_MS = 240_000

Shot = Callable[[Page, str], Path]


def field(page: Page, test_id: str) -> Locator:
    """The native input or textarea inside a Quasar field."""
    selector = ", ".join(
        f"{tag}[data-testid={test_id}], [data-testid={test_id}] {tag}"
        for tag in ("input", "textarea")
    )
    return page.locator(selector).first


def open_screen(page: Page, path: str) -> None:
    page.goto(path)
    wait_for_nicegui(page)


def sign_in(page: Page, username: str) -> None:
    open_screen(page, "/login")
    field(page, "username").fill(username)
    field(page, "password").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("status-mode")).to_contain_text("Mode:", timeout=30_000)


def sign_out(page: Page) -> None:
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("sign-in")).to_be_visible(timeout=30_000)


def send_ct(server: ApplianceServer) -> int:
    """C-STORE the head CT to the appliance's receiver, as a scanner would."""
    datasets = [pydicom.dcmread(path) for path in sorted(CT_HEAD.glob("*.dcm"))]
    c_store(server, datasets, ae_title="E2E_SCANNER")
    return len(datasets)


def slice_number(page: Page) -> int:
    text = page.get_by_test_id("slice-label").inner_text()
    found = re.search(r"(\d+) / (\d+)", text)
    assert found, text
    return int(found.group(1))


def test_day(
    appliance_server: ApplianceServer,
    page: Page,
    shot: Shot,
    assert_touch_targets: Callable[[Page], int],
    no_horizontal_scroll: Callable[[Page], None],
    console_errors: list[str],
    csp_violations: list[str],
    browser: Browser,
) -> None:
    server = appliance_server
    assert server.url.startswith("https://")
    server.add_user("tech", "technician", PASSWORD)
    server.add_user("doctor", "radiologist", PASSWORD)
    server.add_user("boss", "admin", PASSWORD)

    def check(name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        page.evaluate("document.fonts.ready.then(() => true)")
        shot(page, name)
        no_horizontal_scroll(page)
        assert assert_touch_targets(page) >= 1

    # -- technician: sign in -----------------------------------------------------------------
    open_screen(page, "/login")
    expect(page.get_by_text("Sign in").first).to_be_visible()
    check("01-sign-in")
    field(page, "username").fill("tech")
    field(page, "password").fill("not the password")
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("signin-message")).to_have_text(
        "Incorrect username or password.", timeout=30_000)
    sign_in(page, "tech")
    expect(page.get_by_test_id("nav-system")).to_have_count(0)  # not for technicians

    # -- import the DICOMDIR set from a USB stick ----------------------------------------------
    open_screen(page, "/import")
    expect(page.get_by_text(f"AE title: {server.ae_title}")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"Port: {server.dicom_port}")).to_be_visible()
    server.insert_media(DICOMDIR_SET, "USB_STICK")
    page.get_by_test_id("import-medium").click(timeout=30_000)  # appears by itself
    expect(page.get_by_test_id("import-index")).to_have_text(
        "2 patients · 6 studies · 13 series", timeout=LONG_MS)
    expect(page.get_by_test_id("import-counts")).to_contain_text("Imported 31")
    check("03-import")

    # -- a CT arrives over the network: the worklist shows it without a reload ----------------
    open_screen(page, "/")
    cards = page.get_by_test_id("study-card")
    expect(cards).to_have_count(6, timeout=30_000)
    assert send_ct(server) == 28
    expect(cards).to_have_count(7, timeout=60_000)
    ct_card = cards.filter(has_text="28 images")
    expect(ct_card).to_have_count(1)
    study_id = ct_card.get_attribute("data-study")
    assert study_id
    expect(page.get_by_test_id("worklist-count")).to_have_text("7 shown of 7")
    check("02-worklist")

    # -- viewer: scroll by keys, buttons and wheel ----------------------------------------------
    ct_card.get_by_test_id("open-viewer").click()
    wait_for_nicegui(page)
    expect(page.get_by_test_id("slice-label")).to_contain_text("/ 28", timeout=60_000)
    # keys reach the viewer once its browser side is attached (a moment after the page opens)
    page.wait_for_function("() => window.radiantViewer !== undefined", timeout=30_000)
    first = slice_number(page)
    page.get_by_test_id("slice-next").click()
    expect(page.get_by_test_id("slice-label")).to_contain_text(f"{first + 1} / 28")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_test_id("slice-label")).to_contain_text(f"{first + 2} / 28")
    page.get_by_test_id("viewer-image").hover()
    page.mouse.wheel(0, -120)
    expect(page.get_by_test_id("slice-label")).to_contain_text(f"{first + 1} / 28")
    page.get_by_test_id("preset-brain").click()
    expect(page.get_by_text("Window: Brain")).to_be_visible(timeout=30_000)
    wl = page.get_by_test_id("overlay-window")
    expect(wl).to_have_text("C 40 / W 80")
    # Drag to window/level: the numbers change at once, the server renders the dragged window.
    page.get_by_text("Drag: window/level").click()
    box = page.get_by_test_id("viewer-image").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 40, steps=12)
    page.mouse.up()
    expect(page.get_by_text("Window: dragged")).to_be_visible(timeout=30_000)
    expect(wl).not_to_have_text("C 40 / W 80")
    dragged = wl.inner_text()
    center, width = (float(v) for v in dragged.replace("C ", "").replace("W ", "").split(" / "))
    assert width > 80 and center > 40, dragged  # right widens, down raises the centre
    page.get_by_text("Drag: slices").click()
    check("04-viewer")

    # -- analysis against the OpenAI-protocol test server ---------------------------------------
    # Its answer is issue 13's acceptance answer: the definitive wording of the usual answer,
    # a bare diagnosis, a confidence of 1.7, a unit "furlongs", an impression that cannot be
    # hedged (tests/flag_answer.py).
    server.ai.script(Scripted(body=chat_completion(flag_answer.ANSWER)))
    open_screen(page, f"/analysis/{study_id}")
    page.get_by_test_id("run-analysis").click()
    expect(page.get_by_test_id("analysis-message")).to_have_text(
        "Enter the clinical indication first.")
    field(page, "indication").fill("Headache for two weeks; exclude a mass.")
    page.get_by_test_id("run-analysis").click()
    findings = page.get_by_test_id("finding")
    expect(findings.first).to_be_visible(timeout=LONG_MS)
    # The finding's own text (its first line; the flags below it name what was reworded).
    text = findings.first.inner_text().splitlines()[0]
    assert "definitely" not in text.lower()  # the engine's certainty was hedged
    expect(findings.first.get_by_test_id("safety-flag").first).to_contain_text(
        "Reworded by the safety layer")
    assert re.search(r"\b(may|possible|possibly|could|suggest|suspicious|likely|consistent)",
                     text.lower()), text
    expect(findings.first.get_by_test_id("finding-confidence")).to_contain_text("Confidence")
    expect(page.get_by_text("UNVERIFIED").first).to_be_visible()
    expect(page.get_by_test_id("disclaimer")).to_be_visible()
    # Every safety flag is shown beside its text: the bare diagnosis "Malignant brain tumour."
    # was reworded, and the screen says so.
    expect(page.get_by_test_id("safety-flag").first).to_be_visible()
    expect(page.get_by_text("Reworded by the safety layer: \u201cMalignant brain tumour."
                            ).first).to_be_visible()
    expect(findings).to_have_count(4)
    for shown in (
        "Could not be hedged: names a disorder inside quoted words (\u201cglioma\u201d).",
        "Confidence out of range (1.7), replaced by",
        "Unit not recognised (\u201cfurlongs\u201d): the number is kept without a unit.",
    ):
        expect(page.get_by_text(shown).first).to_be_visible()
    assert server.ai.requests, "the analysis never reached the AI server"
    check("05-analysis")

    # -- the draft, handed over -----------------------------------------------------------------
    page.get_by_test_id("to-report").click()
    wait_for_nicegui(page)
    page.get_by_test_id("create-report").click(timeout=30_000)
    expect(page.get_by_text("Read only: a radiologist")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("report-finalize")).to_have_count(0)
    page.get_by_test_id("hand-over").click()
    expect(page.get_by_test_id("handed-over")).to_contain_text("Handed over by tech",
                                                                timeout=30_000)
    check("06-report")
    # The session cookie: Secure, HttpOnly, SameSite=Strict. Signing out ends the session on
    # the server: the same cookie replayed afterwards opens nothing.
    cookies = page.context.cookies()
    session_cookie = next(c for c in cookies if c["name"] == "session")
    assert session_cookie["secure"] and session_cookie["httpOnly"]
    assert session_cookie["sameSite"] == "Strict"
    sign_out(page)
    replay = browser.new_context(base_url=server.url, viewport=page.viewport_size)
    try:
        replay.add_cookies(cookies)
        replayed = replay.new_page()
        replayed.goto("/")
        wait_for_nicegui(replayed)
        expect(replayed.get_by_test_id("sign-in")).to_be_visible(timeout=30_000)
    finally:
        replay.close()

    # -- radiologist: edit, sign, export --------------------------------------------------------
    sign_in(page, "doctor")
    open_screen(page, f"/report/{study_id}")
    expect(page.get_by_test_id("handed-over")).to_be_visible(timeout=30_000)
    impression = field(page, "section-impression")
    impression.fill("Probable right frontal mass; MRI with contrast recommended.")
    page.get_by_test_id("report-save").click()
    expect(page.get_by_test_id("report-version")).to_have_text("Version 2", timeout=30_000)
    # The edited impression is decided; each flagged finding still waits for a decision, and
    # the sign dialog lists them with Sign disabled.
    expect(page.get_by_test_id("undecided-count")).to_contain_text(
        "Flagged items awaiting your decision: 4.")
    page.get_by_test_id("report-finalize").click()
    expect(page.get_by_test_id("undecided-item")).to_have_count(4)
    expect(page.get_by_test_id("undecided-list")).to_contain_text(
        "left frontal lobe): unit not recognised")
    expect(page.get_by_test_id("confirm-sign")).to_be_disabled()
    page.get_by_role("button", name="Cancel").click()
    cards = page.get_by_test_id("report-finding")
    for version, (flag, button) in enumerate((  # each finding by its own flag
        ("Confidence out of range (1.7)", "finding-reject"),
        ("\u201cThis is definitely a malignant mass", "finding-accept"),
        (f"\u201c{flag_answer.BARE_DIAGNOSIS}", "finding-accept"),
        ("\u201cfurlongs\u201d", "finding-accept"),
    ), start=3):
        cards.filter(has_text=flag).get_by_test_id(button).click()
        expect(page.get_by_test_id("report-version")).to_have_text(f"Version {version}",
                                                                   timeout=30_000)
    expect(page.get_by_test_id("undecided-count")).to_have_count(0)
    page.get_by_test_id("report-finalize").click()
    page.get_by_test_id("confirm-sign").click()
    expect(page.get_by_test_id("confirm-message")).to_have_text(
        "Confirm that you reviewed every AI finding before signing.")
    page.get_by_test_id("confirm-reviewed").click()
    page.get_by_test_id("confirm-sign").click()
    expect(page.get_by_text("VERIFIED", exact=True)).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Signed by doctor")).to_be_visible()
    expect(page.get_by_test_id("verified-banner")).to_contain_text(
        "AI suggestions were reviewed.")
    expect(page.get_by_text("UNVERIFIED until")).to_have_count(0)
    expect(page.get_by_test_id("section-impression")).to_contain_text("Probable right frontal")
    with page.expect_popup() as popup:
        page.get_by_test_id("export-pdf").click()
    assert popup.value.url.endswith("/pdf")
    popup.value.close()
    pdf = page.request.get(popup.value.url)
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
    check("07-report-final")
    sign_out(page)

    # -- administrator: switch online -----------------------------------------------------------
    sign_in(page, "boss")
    expect(page.get_by_test_id("status-mode")).to_have_text("Mode: offline")
    open_screen(page, "/system")
    page.get_by_test_id("switch-mode").click(timeout=30_000)
    # Checked first, then confirmed: the dialog names what will start.
    expect(page.get_by_text("Going online will start:")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("The online AI engine at")).to_be_visible()
    page.get_by_test_id("confirm-online").click()
    expect(page.get_by_test_id("status-mode")).to_have_text("Mode: online", timeout=30_000)
    expect(page.get_by_test_id("system-mode")).to_have_text("Mode: online")
    expect(page.get_by_test_id("tls-fingerprint")).to_contain_text(
        server.radiant("tls", "show").split("sha256 fingerprint: ")[1].split()[0]
    )
    check("08-system")
    assert console_errors == []
    assert csp_violations == []
    # The listener is live: an image from elsewhere is blocked by the policy and reported.
    page.evaluate(
        "() => { const i = new Image(); i.src = 'https://192.0.2.1/x.png';"
        " document.body.appendChild(i); }"
    )
    page.wait_for_timeout(500)
    for _ in range(20):
        if csp_violations:
            break
        page.wait_for_timeout(250)
    assert len(csp_violations) == 1 and csp_violations[0].startswith("img-src blocked https://")
