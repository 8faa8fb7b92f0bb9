"""The browser test machinery itself: the real appliance renders its first screen in Debian's
Chromium, and the screen checks (touch targets, horizontal scrolling) can fail."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.e2e.browser import (
    CHROMIUM,
    assert_touch_targets,
    measure_targets,
    no_horizontal_scroll,
    png_size,
    wait_for_nicegui,
)
from tests.e2e.server import ApplianceServer

pytestmark = pytest.mark.e2e
DICOMDIR_SET = (
    Path(__file__).resolve().parents[1] / "data" / "dicomdir_pcir_3patients_prior_current"
)


def test_first_screen_renders_in_chromium(
    appliance_server: ApplianceServer,
    page: Page,
    console_errors: list[str],
    shot: Callable[[Page, str], Path],
) -> None:
    assert page.context.browser is not None
    version = page.context.browser.version
    assert version and version[0].isdigit()  # Debian's build, launched from /usr/bin/chromium
    assert CHROMIUM.exists()

    response = page.goto("/")
    assert response is not None and response.ok, response and response.status
    wait_for_nicegui(page)
    page.evaluate("document.fonts.ready.then(() => true)")
    assert "RadiantAI" in page.title()
    assert "first-boot" not in page.url  # the fixture's box is provisioned
    assert page.locator("body").inner_text().strip(), "the screen shows no text"

    path = shot(page, "smoke-first-screen")
    assert path.name == "smoke-first-screen.png" and png_size(path) == (1280, 800)
    no_horizontal_scroll(page)
    assert assert_touch_targets(page) >= 1  # something clickable was measured, all big enough
    assert console_errors == []
    # The server logged only JSON lines, none of them an error, while serving the screen.
    lines = [line for line in appliance_server.log().splitlines() if line.strip()]
    assert lines and [line for line in lines if not _json_below_error(line)] == []


def test_server_fixture_is_wired_to_its_peers(appliance_server: ApplianceServer) -> None:
    assert appliance_server.url.startswith("http://127.0.0.1:")
    assert appliance_server.data_dir.joinpath("radiant.db").exists()
    assert appliance_server.media_root.is_dir() and appliance_server.dicom_port > 0
    assert appliance_server.ae_title == appliance_server.env["RADIANT_DICOM_AE_TITLE"]
    assert appliance_server.env["RADIANT_AI_ENDPOINT"] == appliance_server.ai.url
    assert appliance_server.env["RADIANT_MEDIA_ROOTS"] == str(appliance_server.media_root)
    assert appliance_server.setup_admin is not None
    appliance_server.add_user("smoke-tech", "technician", "smoke test password 1")
    with pytest.raises(AssertionError, match="smoke-tech"):
        appliance_server.add_user("smoke-tech", "technician", "smoke test password 1")

    # The DICOM receiver answers a C-ECHO on the fixture's port and AE title.
    ae = AE(ae_title="E2E_SMOKE")
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        "127.0.0.1", appliance_server.dicom_port, ae_title=appliance_server.ae_title
    )
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status and status.Status == 0

    # A stick copied into media_root is seen by the server's media watcher, and its removal too.
    appliance_server.insert_media(DICOMDIR_SET, "SMOKE_STICK")
    _wait_for_log(appliance_server, '"event": "media_appeared"')
    appliance_server.eject_media("SMOKE_STICK")
    _wait_for_log(appliance_server, '"event": "media_disappeared"')


def _wait_for_log(server: ApplianceServer, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in server.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never logged {text} within {timeout_s:.0f} s")
        time.sleep(0.2)


def _json_below_error(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("level") not in ("error", "critical")


TOUCH_PAGE = """
<!doctype html><html><body style="margin:0">
  <button id="tiny" style="width:30px;height:30px;padding:0">T</button>
  <button id="big" style="width:48px;height:48px;padding:0">B</button>
  <button style="display:none;width:10px;height:10px">display none</button>
  <button style="visibility:hidden;width:10px;height:10px">visibility hidden</button>
  <button style="opacity:0;width:10px;height:10px">transparent</button>
  <button style="width:0;height:0;padding:0;border:0;overflow:hidden">zero</button>
  <a href="#" style="position:absolute;left:-9999px;width:10px;height:10px">off screen</a>
  <button style="position:absolute;width:1px;height:1px;overflow:hidden;
     clip:rect(0 0 0 0)">screen reader only</button>
  <div style="height:0;overflow:hidden"><button style="width:10px;height:10px">folded</button></div>
</body></html>
"""

SMALL_KINDS = """
<!doctype html><html><body style="margin:0;display:flex;flex-wrap:wrap;gap:8px">
  <a href="#x" style="display:inline-block;width:40px;height:20px">link</a>
  <div role="tab" style="width:60px;height:40px">tab</div>
  <div role="switch" style="width:40px;height:60px">switch</div>
  <span class="q-chip q-chip--clickable" style="display:inline-block;width:80px;height:32px">
    chip</span>
  <span style="cursor:pointer;display:inline-block;width:30px;height:30px">
    <b style="display:inline-block;width:10px;height:10px">child</b>pointer</span>
  <input type="checkbox" style="width:16px;height:16px">
  <div tabindex="0" style="width:44px;height:44px">focusable</div>
  <div style="height:0;overflow:hidden">
    <button style="position:absolute;left:300px;top:300px;width:20px;height:20px">escaped</button>
  </div>
  <div style="height:20px;overflow-x:hidden;overflow-y:auto">
    <div style="height:100px"></div><button style="width:20px;height:20px">scroll down</button>
  </div>
  <label class="q-field" style="display:block;width:300px">
    <div class="q-field__control" style="height:56px">
      <input class="q-field__native" style="height:24px" placeholder="in a big field">
      <i class="q-select__dropdown-icon" style="cursor:pointer;width:24px;height:24px">v</i>
    </div>
  </label>
</body></html>
"""


def test_touch_target_check_fails_on_a_small_visible_button(page: Page) -> None:
    page.set_content(TOUCH_PAGE)
    with pytest.raises(AssertionError) as failure:
        assert_touch_targets(page)
    message = str(failure.value)
    assert "1 of 2 clickable elements" in message
    assert "button#tiny" in message and "30x30" in message
    assert "#big" not in message
    for hidden in ("display none", "visibility hidden", "transparent", "off screen", "reader"):
        assert hidden not in message


def test_touch_target_check_passes_at_48_and_skips_hidden_elements(page: Page) -> None:
    page.set_content(TOUCH_PAGE)
    page.evaluate("document.getElementById('tiny').remove()")
    assert assert_touch_targets(page) == 1
    reasons = {item["text"]: item["hidden"] for item in measure_targets(page)["skipped"]}
    assert reasons == {
        "display none": "invisible",
        "visibility hidden": "invisible",
        "transparent": "invisible",
        "zero": "zero size",
        "off screen": "off screen",
        "screen reader only": "clipped",
        "folded": "clipped by div",
    }


def test_touch_target_check_finds_every_kind_of_clickable(page: Page) -> None:
    page.set_content(SMALL_KINDS)
    measured = measure_targets(page)["measured"]
    small = sorted(item["text"] or item["tag"] for item in measured if item["small"])
    expected = [
        "[checkbox]",
        "childpointer",
        "chip",
        "escaped",
        "focusable",
        "link",
        "scroll down",
        "switch",
        "tab",
    ]
    assert small == expected, measured
    # The input inside a 56 px field is measured as the field, which is big enough.
    fields = [item for item in measured if "q-field__control" in item["classes"]]
    assert len(fields) == 1 and fields[0]["height"] == 56 and not fields[0]["small"]
    # The pointer cursor inherited by the child is not a second target.
    assert not [item for item in measured if item["text"] == "child"]


def test_horizontal_scroll_check_fails_on_a_wide_page(page: Page) -> None:
    page.set_content('<body style="margin:0"><div style="width:1279px">fits</div></body>')
    no_horizontal_scroll(page)
    page.set_content('<body style="margin:0"><div class="table" style="width:1400px">x</div>')
    with pytest.raises(AssertionError, match=r"document width 1400 px[\s\S]*div\.table"):
        no_horizontal_scroll(page)
