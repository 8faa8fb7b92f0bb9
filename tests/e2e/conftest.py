"""Fixtures of the browser tests: the real appliance and Debian's Chromium.

- ``appliance_server`` (module): ``radiant serve`` on free 127.0.0.1 ports with a fresh data
  dir, the recording OpenAI-protocol server (``.ai``) as its engine and ``.media_root`` as its only
  media mount root; ``.url``, ``.data_dir``, ``.dicom_port``, ``.ae_title``, ``.add_user(username,
  role, password)``, ``.insert_media(folder, label)``, ``.radiant(*args)``, ``.log()``. The box is
  provisioned (``radiant provision``: site, English, offline, administrator ``.setup_admin``) so
  ``/`` leads to sign-in. A test module may set ``APPLIANCE_ENV = {"RADIANT_...": ...}`` to add or
  override settings, ``APPLIANCE_PROVISIONED = False`` for a box on its first-boot screen, and
  ``APPLIANCE_TLS = True`` to serve HTTPS with the box certificate (the browser then trusts that
  certificate alone, pinned by its public key; certificate errors are never ignored).
- ``page`` (function): a page of a fresh browser context, 1280x800, in one headless Chromium per
  module; ``base_url`` is the appliance's when the test also uses ``appliance_server``.
- ``console_errors``: the page's console errors and uncaught exceptions so far (a live list).
- ``csp_violations``: every ``securitypolicyviolation`` event of the page's documents so far.
- ``shot(page, name)``: saves ``name.png`` (1280x800) into ``output_dir``: a per-test folder under
  ``tmp_path``, or ``$RADIANT_SCREENSHOT_DIR`` when set (``just screenshots``).
- ``assert_touch_targets(page)``, ``no_horizontal_scroll(page)``: the checks of
  ``tests/e2e/browser.py`` (also importable from there).

When a test fails, its report gets the page's console, a screenshot of the page (``failure.png``
under ``tmp_path``) and the end of the server's log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright, sync_playwright

from tests.e2e import browser as chromium
from tests.e2e.server import ApplianceServer, start_appliance, stop_appliance

# Read at import: tests/conftest.py's autouse fixture hides every RADIANT_* variable from tests.
_SHOTS_ENV = os.environ.get("RADIANT_SCREENSHOT_DIR", "").strip()
SCREENSHOT_DIR: Path | None = Path(_SHOTS_ENV).resolve() if _SHOTS_ENV else None
_HERE = Path(__file__).resolve().parent


@dataclass
class PageState:
    """What the failure report needs from a test's page."""

    page: Page
    tmp_path: Path
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)


_PAGE_STATE = pytest.StashKey[PageState]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e carries the ``e2e`` marker, even one that forgot it."""
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        state = item.stash.get(_PAGE_STATE, None)
        if state is not None:
            if state.console:
                report.sections.append(("browser console", "\n".join(state.console[-100:])))
            if not state.page.is_closed():
                try:
                    path = chromium.save_shot(state.page, state.tmp_path, "failure")
                    report.sections.append(("failure screenshot", str(path)))
                except (Error, AssertionError, ValueError) as exc:
                    report.sections.append(("failure screenshot", f"not taken: {exc}"))
        funcargs = getattr(item, "funcargs", {})
        server = funcargs.get("appliance_server")
        if isinstance(server, ApplianceServer):
            report.sections.append(
                (f"radiant serve log, last lines ({server.log_path})", server.log_tail())
            )
    return report


@pytest.fixture(scope="module")
def appliance_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApplianceServer]:
    root = tmp_path_factory.mktemp("appliance")
    server = start_appliance(
        root,
        getattr(request.module, "APPLIANCE_ENV", None),
        provisioned=getattr(request.module, "APPLIANCE_PROVISIONED", True),
        tls=getattr(request.module, "APPLIANCE_TLS", False),
    )
    try:
        yield server
    finally:
        stop_appliance(server)


@pytest.fixture(scope="module")
def playwright(request: pytest.FixtureRequest) -> Iterator[Playwright]:
    # Module scope, not session: the sync API must not be alive while other (asyncio) test
    # modules run. For an HTTPS appliance, Playwright's own HTTP client (page.request, in its
    # Node.js driver) trusts the box certificate through NODE_EXTRA_CA_CERTS, read when the
    # driver starts.
    extra_ca = None
    if getattr(request.module, "APPLIANCE_TLS", False):
        server: ApplianceServer = request.getfixturevalue("appliance_server")
        extra_ca = str(server.certificate)
    saved = os.environ.get("NODE_EXTRA_CA_CERTS")
    if extra_ca:
        os.environ["NODE_EXTRA_CA_CERTS"] = extra_ca
    try:
        manager = sync_playwright()
        pw = manager.start()
    finally:
        if extra_ca:
            if saved is None:
                os.environ.pop("NODE_EXTRA_CA_CERTS", None)
            else:
                os.environ["NODE_EXTRA_CA_CERTS"] = saved
    try:
        yield pw
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest, playwright: Playwright) -> Iterator[Browser]:
    """One Chromium per test module; each test gets its own context (cookies, storage). For an
    HTTPS appliance it trusts the box certificate's public key (and nothing else extra)."""
    pins: list[str] = []
    if getattr(request.module, "APPLIANCE_TLS", False):
        server: ApplianceServer = request.getfixturevalue("appliance_server")
        pins.append(server.spki_pin())
    try:
        instance = chromium.launch(playwright, spki_pins=pins)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    """Where this test's screenshots go."""
    return SCREENSHOT_DIR or tmp_path / "screenshots"


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Browser, tmp_path: Path) -> Iterator[Page]:
    base_url = None
    if "appliance_server" in request.fixturenames:
        base_url = request.getfixturevalue("appliance_server").url
    context = browser.new_context(
        viewport=chromium.VIEWPORT,
        device_scale_factor=1,
        base_url=base_url,
        locale="en-US",
        accept_downloads=True,
    )
    context.set_default_timeout(30_000)
    new_page = context.new_page()
    state = PageState(new_page, tmp_path)

    def on_console(message: ConsoleMessage) -> None:
        line = f"{message.type}: {message.text}"
        state.console.append(line)
        if message.type == "error":
            state.errors.append(line)

    def on_page_error(error: Error) -> None:
        line = f"uncaught: {error.message}"
        state.console.append(line)
        state.errors.append(line)

    def on_csp(source: object, report: str) -> None:
        state.csp.append(report)
        state.console.append(f"csp violation: {report}")

    context.expose_binding("__radiantCspViolation", on_csp)
    context.add_init_script(chromium.CSP_LISTENER_JS)
    new_page.on("console", on_console)
    new_page.on("pageerror", on_page_error)
    request.node.stash[_PAGE_STATE] = state
    try:
        yield new_page
    finally:
        context.close()


@pytest.fixture
def console_errors(request: pytest.FixtureRequest, page: Page) -> list[str]:
    """Console errors and uncaught exceptions of ``page`` (grows while the test runs)."""
    state: PageState = request.node.stash[_PAGE_STATE]
    return state.errors


@pytest.fixture
def csp_violations(request: pytest.FixtureRequest, page: Page) -> list[str]:
    """Content-Security-Policy violations of ``page`` (grows while the test runs)."""
    state: PageState = request.node.stash[_PAGE_STATE]
    return state.csp


@pytest.fixture
def shot(output_dir: Path) -> Callable[[Page, str], Path]:
    """``shot(page, "02-worklist")`` saves the 1280x800 viewport as ``02-worklist.png``."""

    def _shot(page: Page, name: str) -> Path:
        return chromium.save_shot(page, output_dir, name)

    return _shot


@pytest.fixture
def assert_touch_targets() -> Callable[..., int]:
    return chromium.assert_touch_targets


@pytest.fixture
def no_horizontal_scroll() -> Callable[[Page], None]:
    return chromium.no_horizontal_scroll


@pytest.fixture
def shot_sized(output_dir: Path) -> Callable[[Page, str], Path]:
    """``shot_sized(page, "viewer-1920x1080")``: like ``shot`` at the page's current size."""

    def _shot(page: Page, name: str) -> Path:
        return chromium.save_shot_sized(page, output_dir, name)

    return _shot
