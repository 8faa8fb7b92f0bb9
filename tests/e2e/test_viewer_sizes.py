"""The touch viewer in Debian's Chromium against the real appliance, at 1280x800 and 1920x1080:
the image fills the free height and the page never scrolls; orientation letters on the four
edges; pan by drag when zoomed; Home/End/Page Up/Page Down move through the slices without
scrolling the page; the overlay names the window in force (a preset with its own numbers, not
the dragged ones); overlay text stays inside the image, also on a very wide radiograph whose
missing demographics read "unknown".

The CT is the head CT of tests/data (28 slices, 18.5 degree gantry tilt, sent by C-STORE as a
scanner would); the radiograph is the NIH chest image of tests/data cut to a 1024x160 strip,
with Patient Orientation L\\F and neither sex nor birth date."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from playwright.sync_api import Locator, Page, expect
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.e2e.browser import wait_for_nicegui
from tests.e2e.clinic import c_store
from tests.e2e.server import ApplianceServer

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parents[1] / "data"
CT_HEAD = DATA / "ct_ge_head_tilt18_varspacing"
CHEST = DATA / "xr_chest_cr_dx" / "NIH_ChestXray_DX_SC.dcm"
PASSWORD = "a viewer test passphrase"
LONG_MS = 120_000

Shot = Callable[[Page, str], Path]

MEASURE_JS = r"""
() => {
  const q = (s) => document.querySelector(s);
  const r = (el) => {
    const b = el.getBoundingClientRect();
    return {x: b.left, y: b.top, right: b.right, bottom: b.bottom, w: b.width, h: b.height};
  };
  const inBox = '[data-testid=overlay-box] ';
  const texts = [...document.querySelectorAll(inBox + '.radiant-overlay, ' + inBox
    + '.radiant-marker')].filter((e) => e.textContent.trim());
  return {
    image: r(q('[data-testid=viewer-image]')),
    viewport: r(q('.radiant-viewport')),
    box: r(q('[data-testid=overlay-box]')),
    next: r(q('[data-testid=slice-next]')),
    reset: r(q('[data-testid=view-reset]')),
    footer: r(q('.radiant-footer')),
    innerWidth: window.innerWidth,
    innerHeight: window.innerHeight,
    scrollHeight: document.scrollingElement.scrollHeight,
    scrollWidth: document.scrollingElement.scrollWidth,
    scrollY: window.scrollY,
    overlays: texts.map((e) => ({text: e.textContent.slice(0, 60), ...r(e)})),
  };
}
"""

TRANSLATE_JS = r"""
() => {
  const t = getComputedStyle(document.querySelector('.radiant-plate')).transform;
  if (t === 'none') return [1, 0, 0];
  const m = t.match(/matrix\(([^)]+)\)/)[1].split(',').map(Number);
  return [m[0], m[4], m[5]];
}
"""

# Two touch pointers on the image: down at 100 px apart, then moved to 200 px apart (a pinch
# that doubles the zoom), then up. Chromium's touch input cannot be driven with two fingers
# from the test, so the pointer events are dispatched as a touch screen sends them.
PINCH_JS = r"""
() => {
  const el = document.querySelector('.radiant-viewport');
  const r = document.querySelector('[data-testid=viewer-image]').getBoundingClientRect();
  const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
  const send = (type, id, x) => el.dispatchEvent(new PointerEvent(type, {pointerId: id,
    pointerType: 'touch', isPrimary: id === 21, clientX: x, clientY: cy, bubbles: true}));
  send('pointerdown', 21, cx - 50); send('pointerdown', 22, cx + 50);
  for (let step = 1; step <= 5; step++) {
    send('pointermove', 21, cx - 50 - 10 * step); send('pointermove', 22, cx + 50 + 10 * step);
  }
  send('pointerup', 21, cx - 100); send('pointerup', 22, cx + 100);
}
"""

# Records, after each key press, whether the page kept its default action (scrolling).
KEY_PROBE_JS = r"""
() => {
  window.__radiantKeys = [];
  window.addEventListener('keydown', (e) => setTimeout(
    () => window.__radiantKeys.push([e.key, e.defaultPrevented])), true);
}
"""


def field(page: Page, test_id: str) -> Locator:
    return page.locator(f"input[data-testid={test_id}], [data-testid={test_id}] input").first


def sign_in(page: Page, username: str) -> None:
    page.goto("/login")
    wait_for_nicegui(page)
    field(page, "username").fill(username)
    field(page, "password").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("status-mode")).to_contain_text("Mode:", timeout=30_000)


def wide_radiograph() -> Dataset:
    """The chest image cut to a 1024x160 strip: a new study, Patient Orientation L\\F (rows
    to the patient's left, columns to the feet), no sex, no birth date."""
    ds = pydicom.dcmread(CHEST)
    strip = np.ascontiguousarray(ds.pixel_array[400:560, :])
    ds.PixelData = strip.tobytes()
    ds.Rows, ds.Columns = strip.shape
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "E2E-WIDE-1"
    ds.PatientSex = ""
    ds.PatientBirthDate = ""
    ds.PatientOrientation = ["L", "F"]
    return ds


def study_id(server: ApplianceServer, modality: str) -> str:
    with sqlite3.connect(f"file:{server.data_dir / 'radiant.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT id FROM studies WHERE modalities LIKE ?",
                         (f"%{modality}%",)).fetchone()
    assert row, modality
    return str(row[0])


def open_viewer(page: Page, study: str, total: int) -> None:
    page.goto(f"/viewer/{study}")
    wait_for_nicegui(page)
    expect(page.get_by_test_id("slice-label")).to_contain_text(f"/ {total}", timeout=LONG_MS)
    wait_for_image(page)


def wait_for_image(page: Page) -> None:
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-testid=viewer-image] img');"
        " const box = document.querySelector('[data-testid=overlay-box]');"
        " return img && img.complete && img.naturalWidth > 0 && box.offsetWidth > 1"
        " && Math.abs(box.offsetWidth - img.getBoundingClientRect().width) < 2; }",
        timeout=LONG_MS)


def measure(page: Page) -> dict[str, Any]:
    page.evaluate("document.fonts.ready.then(() => true)")
    found: dict[str, Any] = page.evaluate(MEASURE_JS)
    return found


def slice_number(page: Page) -> int:
    text = page.get_by_test_id("slice-label").inner_text()
    found = re.search(r"(\d+) / (\d+)", text)
    assert found, text
    return int(found.group(1))


def assert_fills_without_page_scroll(m: dict[str, Any]) -> None:
    """The image takes the viewport's full height (a CT or chest image is wider than tall
    there) or full width; the toolbar sits right under it, the status bar right under that;
    the page itself never scrolls either way."""
    image, viewport = m["image"], m["viewport"]
    assert m["scrollHeight"] <= m["innerHeight"], m
    assert m["scrollWidth"] <= m["innerWidth"], m
    assert m["scrollY"] == 0, m
    assert image["h"] >= viewport["h"] - 2 or image["w"] >= viewport["w"] - 2, m
    assert image["bottom"] <= viewport["bottom"] + 1 and image["right"] <= viewport["right"] + 1
    assert 0 <= m["next"]["y"] - viewport["bottom"] <= 16, m  # the toolbar, right below
    assert 0 <= m["footer"]["y"] - m["reset"]["bottom"] <= 24, m  # then the status bar


def assert_overlay_inside_image(m: dict[str, Any]) -> None:
    image, box = m["image"], m["box"]
    for edge in ("x", "y", "right", "bottom"):
        assert abs(box[edge] - image[edge]) <= 1, (edge, box, image)
    assert m["overlays"], "no overlay text at all"
    for item in m["overlays"]:
        inside = (item["x"] >= image["x"] - 1 and item["y"] >= image["y"] - 1
                  and item["right"] <= image["right"] + 1
                  and item["bottom"] <= image["bottom"] + 1)
        assert inside, (item, image)


def assert_markers(page: Page, left: str, right: str, top: str, bottom: str) -> None:
    for side, letters in (("left", left), ("right", right), ("top", top),
                          ("bottom", bottom)):
        marker = page.get_by_test_id(f"marker-{side}")
        expect(marker).to_have_text(letters)
        expect(marker).to_be_visible()


def test_viewer_at_two_sizes(
    appliance_server: ApplianceServer,
    page: Page,
    shot: Shot,
    shot_sized: Shot,
    assert_touch_targets: Callable[[Page], int],
    no_horizontal_scroll: Callable[[Page], None],
    console_errors: list[str],
    csp_violations: list[str],
) -> None:
    server = appliance_server
    server.add_user("tech", "technician", PASSWORD)
    c_store(server, [pydicom.dcmread(p) for p in sorted(CT_HEAD.glob("*.dcm"))], "E2E_SCANNER")
    c_store(server, [wide_radiograph()], "E2E_SCANNER")
    ct, xr = study_id(server, "CT"), study_id(server, "DX")
    sign_in(page, "tech")

    # -- 1280x800: the head CT --------------------------------------------------------------
    open_viewer(page, ct, 28)
    small = measure(page)
    assert_fills_without_page_scroll(small)
    assert_overlay_inside_image(small)
    # Rows run to the patient's left, columns posterior and (18.5 degree tilt) to the feet.
    assert_markers(page, "R", "L", "AH", "PF")
    # The CT carries no sex or birth date: said in words.
    expect(page.get_by_test_id("overlay-demographics")).to_contain_text(
        "sex unknown · age unknown · birth date unknown")
    shot(page, "viewer-1280x800")
    assert assert_touch_targets(page) >= 10
    no_horizontal_scroll(page)

    # -- the window in force: a preset by name with its numbers, a drag, a preset again ------
    preset, numbers = page.get_by_test_id("overlay-preset"), page.get_by_test_id("overlay-window")
    page.get_by_test_id("preset-brain").click()
    expect(preset).to_have_text("Window: Brain", timeout=30_000)
    expect(numbers).to_have_text("C 40 / W 80")
    page.get_by_text("Drag: window/level").click()
    image = small["image"]
    x, y = image["x"] + image["w"] / 2, image["y"] + image["h"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 40, steps=12)
    page.mouse.up()
    expect(preset).to_have_text("Window: dragged", timeout=30_000)
    expect(numbers).not_to_have_text("C 40 / W 80")
    page.get_by_test_id("preset-soft").click()
    expect(preset).to_have_text("Window: Soft tissue", timeout=30_000)
    expect(numbers).to_have_text("C 40 / W 400")  # the preset's numbers, not the dragged ones
    page.get_by_text("Drag: slices").click()

    # -- pan when zoomed: the drag moves the image, not the slices ---------------------------
    before = slice_number(page)
    assert page.evaluate(TRANSLATE_JS) == [1, 0, 0]
    page.get_by_test_id("zoom-in").click()
    page.get_by_test_id("zoom-in").click()
    expect(page.get_by_test_id("overlay-zoom")).to_have_text("156% · drag moves the image")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 80, y - 60, steps=8)
    page.mouse.up()
    scale, dx, dy = page.evaluate(TRANSLATE_JS)
    assert scale == pytest.approx(1.5625, abs=0.01)
    assert dx == pytest.approx(-80, abs=2) and dy == pytest.approx(-60, abs=2), (dx, dy)
    assert slice_number(page) == before
    # Never further than the image's edge: it still covers its rectangle.
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 2000, y + 2000, steps=8)
    page.mouse.up()
    _, dx, dy = page.evaluate(TRANSLATE_JS)
    assert dx == pytest.approx(image["w"] * 0.5625 / 2, abs=2)
    assert dy == pytest.approx(image["h"] * 0.5625 / 2, abs=2)
    shot(page, "viewer-zoomed-1280x800")
    page.get_by_test_id("view-reset").click()
    expect(page.get_by_test_id("overlay-zoom")).to_have_text("100%")
    assert page.evaluate(TRANSLATE_JS) == [1, 0, 0]

    # -- two fingers pinch: the zoom follows the fingers' distance ------------------------------
    page.evaluate(PINCH_JS)
    scale, dx, dy = page.evaluate(TRANSLATE_JS)
    assert scale == pytest.approx(2.0, abs=0.01), scale
    expect(page.get_by_test_id("overlay-zoom")).to_have_text("200% · drag moves the image")
    assert slice_number(page) == before
    page.get_by_test_id("view-reset").click()
    expect(page.get_by_test_id("overlay-zoom")).to_have_text("100%")

    # -- keys: Home/End/Page Down/Page Up, the page never scrolls ----------------------------
    page.evaluate(KEY_PROBE_JS)
    label = page.get_by_test_id("slice-label")
    for key, shown in (("End", "28 / 28"), ("Home", "1 / 28"), ("PageDown", "11 / 28"),
                       ("PageDown", "21 / 28"), ("PageUp", "11 / 28"), ("ArrowDown", "12 / 28"),
                       ("Home", "1 / 28")):
        page.keyboard.press(key)
        expect(label).to_contain_text(f"Slice {shown}", timeout=30_000)
        assert page.evaluate("window.scrollY") == 0, key
    pressed = page.evaluate("window.__radiantKeys")
    assert [k for k, _ in pressed] == ["End", "Home", "PageDown", "PageDown", "PageUp",
                                       "ArrowDown", "Home"]
    assert all(prevented for _, prevented in pressed), pressed  # no default scrolling

    # -- 1920x1080: larger, still no page scroll -----------------------------------------------
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_function(
        "(h) => document.querySelector('[data-testid=viewer-image]')"
        ".getBoundingClientRect().height > h + 150", arg=small["image"]["h"])
    large = measure(page)
    assert_fills_without_page_scroll(large)
    assert_overlay_inside_image(large)
    assert large["image"]["h"] > small["image"]["h"] + 150, (large["image"], small["image"])
    assert_markers(page, "R", "L", "AH", "PF")
    shot_sized(page, "viewer-1920x1080")
    page.set_viewport_size({"width": 1280, "height": 800})

    # -- a very wide radiograph: overlay inside the image, Patient Orientation's letters -------
    open_viewer(page, xr, 1)
    strip = measure(page)
    assert strip["image"]["w"] == pytest.approx(strip["image"]["h"] * 1024 / 160, rel=0.02)
    assert_fills_without_page_scroll(strip)
    assert_overlay_inside_image(strip)
    assert_markers(page, "R", "L", "H", "F")
    expect(page.get_by_test_id("overlay-demographics")).to_contain_text("sex unknown")
    shot(page, "viewer-wide-radiograph-1280x800")
    assert assert_touch_targets(page) >= 10
    no_horizontal_scroll(page)

    # -- the same screen in French: still no page scroll, words for what is missing -----------
    page.get_by_test_id("lang-fr").click()
    wait_for_nicegui(page)
    open_viewer(page, ct, 28)
    french = measure(page)
    assert_fills_without_page_scroll(french)
    assert_overlay_inside_image(french)
    expect(page.get_by_test_id("overlay-demographics")).to_contain_text(
        "sexe inconnu · âge inconnu · date de naissance inconnue")
    assert_markers(page, "R", "L", "AH", "PF")
    shot(page, "viewer-fr-1280x800")
    assert assert_touch_targets(page) >= 10
    no_horizontal_scroll(page)

    assert console_errors == []
    assert csp_violations == []
