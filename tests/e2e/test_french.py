"""The appliance in French, in Debian's Chromium: screen language and report language French
(RADIANT_LANGUAGE, RADIANT_REPORT_LANGUAGE). A technician receives a head CT over the network,
runs an analysis against the OpenAI-protocol test server and drafts the report; a radiologist
switches the draft's report language to English and back. No English sentence the report
generator can write (every text of ``appliance/reports/locales/en.json`` that French says
otherwise) appears on the report screen nor in the exported PDF; French ones do. No label is
cut off at 1280x800 on the worklist, analysis and report screens; touch targets and no
horizontal scroll as everywhere."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from appliance.reports import language
from tests.ai_server import FINDINGS_ANSWER, Scripted, chat_completion
from tests.e2e.browser import truncated_labels, wait_for_nicegui
from tests.e2e.server import ApplianceServer
from tests.e2e.test_day import PASSWORD, field, open_screen, send_ct

pytestmark = pytest.mark.e2e
APPLIANCE_ENV = {"RADIANT_LANGUAGE": "fr", "RADIANT_REPORT_LANGUAGE": "fr"}
LONG_MS = 240_000

Shot = Callable[[Page, str], Path]


def english_sentences() -> list[str]:
    """The fixed words of every English report text that French writes differently: each
    stretch between placeholders with two words or more (single words such as "Technique"
    are the same in both languages)."""
    english, french = language.catalog("en"), language.catalog("fr")
    found: set[str] = set()
    for key, text in english.items():
        for part in re.split(r"\{[^}]*\}", text):
            words = re.findall(r"[A-Za-z]+", part)
            piece = part.strip(" .,:;()[]")
            if len(words) >= 2 and piece and piece not in french[key]:
                found.add(piece)
    found.add("None.")
    return sorted(found)


def french_expected() -> list[str]:
    """Report texts the French draft of a CT with an AI analysis must show."""
    t = language.catalog("fr")
    return [t["technique.no_contrast"], t["limitations.ai"], t["disclaimer"], t["none"]]


def english_in(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [s for s in english_sentences() if s in flat]


def sign_in(page: Page, username: str) -> None:
    open_screen(page, "/login")
    field(page, "username").fill(username)
    field(page, "password").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("status-mode")).to_contain_text("Mode :", timeout=30_000)


def pdf_text(data: bytes, folder: Path) -> str:
    """The PDF's text by poppler's pdftotext (as the export tests read it)."""
    assert shutil.which("pdftotext"), "poppler-utils is missing"
    path = folder / "report.pdf"
    path.write_bytes(data)
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True, timeout=60
    )
    return " ".join(done.stdout.decode("utf-8").split())


def test_the_generator_lists_cover_the_catalog() -> None:
    sentences = english_sentences()
    assert "No contrast agent is recorded in the image headers" in sentences
    assert "Slice thickness" in sentences and "None." in sentences
    assert "Technique" not in sentences  # the same word in French


def test_french_day(
    appliance_server: ApplianceServer,
    page: Page,
    shot: Shot,
    assert_touch_targets: Callable[[Page], int],
    no_horizontal_scroll: Callable[[Page], None],
    console_errors: list[str],
    tmp_path: Path,
) -> None:
    server = appliance_server
    server.add_user("tech", "technician", PASSWORD)
    server.add_user("doctor", "radiologist", PASSWORD)

    def check(name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        page.evaluate("document.fonts.ready.then(() => true)")
        shot(page, name)
        no_horizontal_scroll(page)
        assert assert_touch_targets(page) >= 1
        assert truncated_labels(page) == [], name

    # -- technician, in French: the CT arrives on the worklist ----------------------------------
    sign_in(page, "tech")
    open_screen(page, "/")
    # The truncation check sees a label cut off (a select label squeezed into 60 px).
    page.evaluate(
        """() => { const d = document.createElement('div'); d.id = 'cut-probe';
        d.className = 'q-field__label'; d.textContent = 'Toutes les modalités possibles';
        d.style.cssText = 'width:60px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis';
        document.body.appendChild(d); }"""
    )
    assert any("Toutes les" in cut for cut in truncated_labels(page))
    page.evaluate("document.getElementById('cut-probe').remove()")
    assert send_ct(server) == 28
    cards = page.get_by_test_id("study-card")
    expect(cards).to_have_count(1, timeout=60_000)
    expect(cards.first).to_contain_text("28 images en 1 série", timeout=30_000)
    study_id = cards.first.get_attribute("data-study")
    assert study_id
    check("fr-01-worklist")
    page.get_by_test_id("worklist-view").get_by_text("Tableau").click()
    expect(page.get_by_test_id("study-row")).to_have_count(1, timeout=30_000)
    check("fr-01-worklist-table")
    page.get_by_test_id("worklist-view").get_by_text("Cartes").click()

    # -- analysis --------------------------------------------------------------------------------
    server.ai.script(Scripted(body=chat_completion(FINDINGS_ANSWER)))
    open_screen(page, f"/analysis/{study_id}")
    field(page, "indication").fill("Céphalées depuis deux semaines.")
    page.get_by_test_id("run-analysis").click()
    expect(page.get_by_test_id("finding").first).to_be_visible(timeout=LONG_MS)
    # The safety layer's disclaimer of the result, in the screen language.
    expect(page.get_by_test_id("disclaimer")).to_have_text(language.text("fr", "disclaimer"))
    check("fr-02-analysis")

    # -- the draft in French ----------------------------------------------------------------------
    page.get_by_test_id("to-report").click()
    wait_for_nicegui(page)
    page.get_by_test_id("create-report").click(timeout=30_000)
    expect(page.get_by_test_id("report-disclaimer")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("section-technique")).to_contain_text(
        "TDM de la tête : 1 série, 28 images.")
    body = page.locator("body").inner_text()
    assert english_in(body) == []
    for text in french_expected():
        assert " ".join(text.split()) in " ".join(body.split()), text
    expect(page.get_by_test_id("report-disclaimer")).to_contain_text("UNVERIFIED")
    check("fr-03-report")

    with page.expect_popup() as popup:
        page.get_by_test_id("export-pdf").click()
    url = popup.value.url
    popup.value.close()
    pdf = page.request.get(url)
    assert pdf.ok and pdf.body().startswith(b"%PDF")
    text = pdf_text(pdf.body(), tmp_path)
    assert english_in(text) == []
    for expected in (
        "Compte rendu de radiologie",
        "BROUILLON IA - NON RELU PAR UN RADIOLOGUE",
        "Indication clinique",
        "Limites",
        "Aucun produit de contraste",
        "NON VÉRIFIÉ (UNVERIFIED)",
        "Page 1 sur",
    ):
        assert expected in text, expected

    # -- the same screens in English: nothing cut off either; the report stays French ------------
    page.get_by_test_id("lang-en").click()
    wait_for_nicegui(page)
    expect(page.get_by_test_id("status-mode")).to_contain_text("Mode:", timeout=30_000)
    expect(page.get_by_test_id("section-technique")).to_contain_text("TDM de la tête")
    expect(page.get_by_test_id("report-language-line")).to_contain_text("Report language: Fran")
    check("en-03-report")
    open_screen(page, f"/analysis/{study_id}")
    expect(page.get_by_test_id("finding").first).to_be_visible(timeout=30_000)
    check("en-02-analysis")
    open_screen(page, "/")
    expect(page.get_by_test_id("study-card").first).to_contain_text(
        re.compile(r"\d+ images in \d+ series"))  # the draft stored its findings SR
    check("en-01-worklist")
    page.get_by_test_id("worklist-view").get_by_text("Table").click()
    expect(page.get_by_test_id("study-row")).to_have_count(1, timeout=30_000)
    check("en-01-worklist-table")
    page.get_by_test_id("lang-fr").click()  # this browser's screen goes back to French
    wait_for_nicegui(page)
    expect(page.get_by_test_id("status-mode")).to_contain_text("Mode :", timeout=30_000)
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("sign-in")).to_be_visible(timeout=30_000)

    # -- radiologist: the draft's report language, per report -------------------------------------
    sign_in(page, "doctor")
    open_screen(page, f"/report/{study_id}")
    choice = page.get_by_test_id("report-language")
    expect(choice).to_be_visible(timeout=30_000)
    check("fr-04-report-radiologist")
    choice.click()
    page.get_by_role("option", name="English").click()
    technique = field(page, "section-technique")
    expect(technique).to_have_value(re.compile(r"^CT head: 1 series, 28 images\."), timeout=30_000)
    expect(page.get_by_test_id("report-version")).to_have_text("Version 2")
    expect(page.get_by_test_id("report-disclaimer")).to_contain_text(
        "AI-generated decision support. Not a diagnosis.")
    page.get_by_test_id("report-language").click()
    page.get_by_role("option", name="Français").click()
    expect(field(page, "section-technique")).to_have_value(
        re.compile(r"^TDM de la tête : 1 série, 28 images\."), timeout=30_000)
    expect(page.get_by_test_id("report-version")).to_have_text("Version 3")
    assert english_in(page.locator("body").inner_text()) == []
    assert console_errors == []
