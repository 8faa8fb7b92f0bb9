"""The worklist screen and its alert banner as the triage browser tests read them: a second
signed-in screen, the banner, the tone counter, the table rows in order, a Quasar select."""

from __future__ import annotations

import time

from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.browser import VIEWPORT
from tests.e2e.server import ApplianceServer
from tests.e2e.test_day import sign_in

POLL_MS = 30_000  # the banner and the worklist poll every few seconds


def second_screen(browser: Browser, server: ApplianceServer, username: str) -> Page:
    context = browser.new_context(viewport=VIEWPORT, base_url=server.url, locale="en-US")
    context.set_default_timeout(30_000)
    other = context.new_page()
    sign_in(other, username)
    return other


def banner(page: Page) -> Locator:
    return page.get_by_test_id("critical-alert")


def tones(page: Page) -> int:
    return int(page.evaluate("window.radiantAlertTones || 0"))


def rows(page: Page) -> Locator:
    return page.get_by_test_id("study-row")


ROW_IDS_JS = (
    "() => Array.from(document.querySelectorAll('[data-testid=study-row]'))"
    ".map(e => e.dataset.study)"
)


def shown_ids(page: Page, expected: list[str] | set[str]) -> list[str]:
    """The rows' study ids in order, once they are ``expected`` (a list: in that order; a set:
    in any order) and the count says so; fails with what is shown after a while."""
    deadline = time.monotonic() + POLL_MS / 1000
    while True:
        shown: list[str] = page.evaluate(ROW_IDS_JS)
        same = shown == expected if isinstance(expected, list) else set(shown) == expected
        if same or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    assert (shown if isinstance(expected, list) else set(shown)) == expected
    total = len(expected)
    expect(page.get_by_test_id("worklist-count")).to_have_text(f"{total} shown of {total}")
    return shown


def choose(page: Page, test_id: str, option: str) -> None:
    """Pick ``option`` in the Quasar select ``test_id``."""
    page.get_by_test_id(test_id).click()
    page.get_by_role("option", name=option, exact=True).click()
