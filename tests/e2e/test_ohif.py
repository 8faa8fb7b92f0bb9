"""OHIF, served by the box at /ohif/, in Debian's Chromium: a radiologist signed in on the
screen opens the LIDC chest CT in the diagnostic viewer without signing in again; the image
renders, scrolls, and the MPR layout shows three planes. Everything it fetches stays on the box.
A draft made from an analysis puts its findings SR in the study: OHIF lists the series and,
opened, draws the finding's box with its measurements over the source image."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect

from appliance.db.connection import open_database
from appliance.export import findings_sr
from tests.e2e.browser import wait_for_nicegui
from tests.e2e.server import ApplianceServer
from tests.reporting import CtStudy, insert_analysis
from ui.ohif import default_dist

pytestmark = pytest.mark.e2e
LIDC = Path(__file__).resolve().parents[3] / "shared/data/dicom/ct_chest_lidc_0001"
PASSWORD = "an ohif test passphrase"
LOAD_MS = 120_000


def _token(server: ApplianceServer) -> str:
    return str(
        httpx.post(
            f"{server.url}/api/auth/token", data={"username": "reader", "password": PASSWORD}
        ).json()["access_token"]
    )


def _stow(server: ApplianceServer, files: list[Path]) -> None:
    token = _token(server)
    boundary = "lidc-boundary"
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    for start in range(0, len(files), 40):
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + f.read_bytes()
                + b"\r\n"
                for f in files[start : start + 40]
            )
            + f"--{boundary}--\r\n".encode()
        )
        answer = httpx.post(
            f"{server.url}/dicom-web/studies",
            content=body,
            timeout=300,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": ctype,
            },
        )
        assert answer.status_code == 200, answer.text[:500]


def _sign_in(page: Page) -> None:
    page.goto("/login")
    wait_for_nicegui(page)
    for test_id, value in (("username", "reader"), ("password", PASSWORD)):
        page.locator(f"input[data-testid={test_id}], [data-testid={test_id}] input").first.fill(
            value
        )
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("status-mode")).to_contain_text("Mode:", timeout=30_000)


def _pixels(viewport: Locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(viewport.screenshot())).convert("L"), dtype=np.int16)


@pytest.fixture(scope="module")
def lidc(appliance_server: ApplianceServer) -> str:
    if not LIDC.is_dir():
        pytest.skip(f"the LIDC-IDRI chest CT is not at {LIDC} (../shared/data/dicom)")
    if not (default_dist() / "index.html").is_file():
        pytest.skip("OHIF is not installed: ./just ohif")
    appliance_server.add_user("reader", "radiologist", PASSWORD)
    files = sorted(LIDC.glob("*.dcm"))
    _stow(appliance_server, files)
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def test_ohif_needs_the_screen_session(appliance_server: ApplianceServer, page: Page) -> None:
    page.goto("/ohif/viewer?StudyInstanceUIDs=1.2.3")
    assert "/login" in page.url
    assert httpx.get(f"{appliance_server.url}/dicom-web/studies").status_code == 401


def test_lidc_opens_renders_scrolls_and_shows_mpr(
    appliance_server: ApplianceServer, page: Page, lidc: str, shot: object
) -> None:
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(appliance_server.url) or r.url.startswith(("data:", "blob:"))
            else outside.append(r.url)
        ),
    )
    page.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
    _sign_in(page)
    # from the worklist, without signing in again
    page.get_by_test_id("open-ohif").first.click()
    page.wait_for_url(f"**/ohif/viewer?StudyInstanceUIDs={lidc}", timeout=30_000)
    viewport = page.locator("[data-viewport-uid]").first
    expect(viewport.locator("canvas").first).to_be_visible(timeout=LOAD_MS)
    page.wait_for_timeout(4000)
    first = _pixels(viewport)
    assert first.std() > 10, "the viewport is blank"
    box = viewport.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(20):
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(50)
    page.wait_for_timeout(2000)
    scrolled = _pixels(viewport)
    assert np.abs(scrolled - first).mean() > 1, "scrolling did not change the slice"
    if callable(shot):
        shot(page, "09-ohif")
    page.goto(f"/ohif/viewer?StudyInstanceUIDs={lidc}&hangingprotocolId=mpr")
    expect(page.locator("[data-viewport-uid]")).to_have_count(3, timeout=LOAD_MS)
    page.wait_for_timeout(8000)
    planes = [_pixels(v) for v in page.locator("[data-viewport-uid]").all()]
    assert all(p.std() > 10 for p in planes), "an MPR plane is blank"
    if callable(shot):
        shot(page, "10-ohif-mpr")
    assert outside == []


# The image points the length is drawn between (column, row) and, from the page, where they
# are on the canvas: cornerstone's own image -> world -> canvas mapping of the viewport shown.
_CANVAS_POINTS_JS = """([a, b]) => {
  const cs = window.cornerstone;
  const viewport = cs.getRenderingEngines()[0].getViewports()
    .find((v) => v.element.closest('[data-viewport-uid]') !== null);
  const imageId = viewport.getCurrentImageId();
  const rect = viewport.canvas.getBoundingClientRect();
  const onPage = (point) => {
    const [x, y] = viewport.worldToCanvas(cs.utilities.imageToWorldCoords(imageId, point));
    return [rect.left + x, rect.top + y];
  };
  return { imageId, from: onPage(a), to: onPage(b) };
}"""
_LENGTHS_JS = """() => window.cornerstoneTools.annotation.state.getAllAnnotations()
  .filter((a) => a.metadata.toolName === 'Length')
  .flatMap((a) => Object.values(a.data.cachedStats || {})
    .map((stats) => [a.annotationUID, stats.length, stats.unit]))"""


def _header_of(imageId: str) -> pydicom.Dataset:
    """The LIDC file of the SOP Instance UID in a WADO-RS image id (.../instances/{sop}/...)."""
    sop = imageId.split("/instances/")[1].split("/")[0]
    for path in sorted(LIDC.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SOPInstanceUID == sop:
            return ds
    raise AssertionError(f"no LIDC file has SOP Instance UID {sop}")


def test_the_length_tool_measures_a_known_distance(
    appliance_server: ApplianceServer, page: Page, lidc: str, shot: object
) -> None:
    page.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
    _sign_in(page)
    page.goto(f"/ohif/viewer?StudyInstanceUIDs={lidc}")
    viewport = page.locator("[data-viewport-uid]").first
    expect(viewport.locator("canvas").first).to_be_visible(timeout=LOAD_MS)
    page.wait_for_timeout(4000)
    assert _pixels(viewport).std() > 10, "the viewport is blank"
    # the Length tool, chosen from the toolbar as a radiologist does
    page.locator('[data-cy="MeasurementTools-split-button-primary"]').click()
    # 200 columns across and 120 rows down from (150, 200): the known distance in mm is the
    # pixel offsets times Pixel Spacing (0028,0030) (row spacing, then column spacing)
    a, b = (150.0, 200.0), (350.0, 320.0)
    placed = page.evaluate(_CANVAS_POINTS_JS, [list(a), list(b)])
    header = _header_of(str(placed["imageId"]))
    row_mm, column_mm = (float(v) for v in header.PixelSpacing)
    expected = float(np.hypot((b[0] - a[0]) * column_mm, (b[1] - a[1]) * row_mm))
    (x1, y1), (x2, y2) = placed["from"], placed["to"]
    page.mouse.move(x1, y1)
    page.mouse.down()
    page.mouse.move(x2, y2, steps=12)
    page.mouse.up()
    # the value OHIF draws beside the line (once drawing has caught up with the pointer), and
    # the one it keeps for the measurement panel
    ((uid, _, _),) = page.evaluate(_LENGTHS_JS)
    label = viewport.locator(f'svg.svg-layer g[data-annotation-uid="{uid}"] text').first
    expect(label).to_have_text(re.compile(r"^[0-9.]+ mm$"), timeout=30_000)
    shown, previous = str(label.text_content()), ""
    for _ in range(60):
        if shown == previous:
            break
        page.wait_for_timeout(500)
        shown, previous = str(label.text_content()), shown
    ((_, kept, unit),) = page.evaluate(_LENGTHS_JS)
    assert unit == "mm"
    assert abs(float(shown.split()[0]) - expected) <= 1.0, (shown, expected)
    assert abs(float(kept) - expected) <= 1.0, (kept, expected)
    # tracked, the measurement is listed in OHIF's measurement panel with the same value
    page.locator('[data-cy="prompt-begin-tracking-yes-btn"]').click(timeout=30_000)
    page.locator('[data-cy="side-panel-header-right"]').first.click()  # open the panel
    page.locator('[data-cy="trackedMeasurements-btn"]').first.click()
    values = page.get_by_text(re.compile(r"^[0-9.]+ mm$"))  # the drawn label and the row
    expect(values).to_have_count(2, timeout=30_000)
    for value in values.all_text_contents():
        assert abs(float(value.split()[0]) - expected) <= 1.0, (value, expected)
    if callable(shot):
        shot(page, "12-ohif-length")


def _draft_from_an_analysis(server: ApplianceServer, study_uid: str) -> None:
    """An analysis with a boxed finding on the LIDC series (rows as the analysis service writes
    them), and a draft made from it through the API: the box stores the findings SR."""
    db = open_database(server.data_dir / "radiant.db")
    try:
        study_id, patient_id = db.execute(
            "SELECT id, patient_id FROM studies WHERE study_uid = ?", (study_uid,)
        ).fetchone()
        series_id = db.execute(
            "SELECT id FROM series WHERE study_id = ? AND modality = 'CT'", (study_id,)
        ).fetchone()[0]
        instances = [
            str(r[0])
            for r in db.execute(
                "SELECT id FROM instances WHERE series_id = ? ORDER BY instance_number",
                (series_id,),
            )
        ]
        ct = CtStudy(str(study_id), str(series_id), str(patient_id), instances)
        analysis_id = insert_analysis(db, ct)
    finally:
        db.conn.close()
    created = httpx.post(
        f"{server.url}/api/reports",
        json={"study_id": ct.study_id, "analysis_id": analysis_id},
        headers={"Authorization": f"Bearer {_token(server)}"},
        timeout=60,
    )
    assert created.status_code == 201, created.text[:500]


def test_ohif_lists_and_shows_the_findings_sr(
    appliance_server: ApplianceServer, page: Page, lidc: str, shot: object
) -> None:
    _draft_from_an_analysis(appliance_server, lidc)
    page.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
    _sign_in(page)
    page.goto(f"/ohif/viewer?StudyInstanceUIDs={lidc}")
    expect(page.locator("[data-viewport-uid]").first.locator("canvas").first).to_be_visible(
        timeout=LOAD_MS
    )
    # The study browser lists the SR series by its description, beside the CT series; opened,
    # it shows the boxed finding over its image with the finding's measurements.
    sr_series = page.get_by_text(findings_sr.UNVERIFIED).first
    expect(sr_series).to_be_visible(timeout=LOAD_MS)
    sr_series.dblclick()
    label = page.locator("svg.svg-layer text", has_text="Long axis: 12.40 mm").first
    _answer_the_tracking_prompt(page, label)
    _step_to_the_finding_if_undrawn(page, label)
    expect(label).to_be_visible(timeout=LOAD_MS)
    if callable(shot):
        shot(page, "11-ohif-findings-sr")


def _step_to_the_finding_if_undrawn(page: Page, label: Locator) -> None:
    """On a loaded machine OHIF 3.13 may open the SR at its first image with the finding's
    annotation dropped ("Measurement is invalidated, skipping"); the SR viewport's arrows step
    to the next and previous finding, as a radiologist would, and draw it again."""
    arrows = page.get_by_role("img", name="arrow-left")
    for _ in range(3):
        try:
            expect(label).to_be_visible(timeout=40_000)
            return
        except AssertionError:
            if arrows.count() < 2:
                return  # no SR navigation: the assertion that follows says what is shown
            arrows.nth(1).click()  # next finding
            arrows.nth(0).click()  # and back: the only finding, drawn again


def _answer_the_tracking_prompt(page: Page, label: Locator) -> None:
    """OHIF asks whether to keep tracking the SR's measurements as the radiologist would answer
    it ("No": only view the SR). On a loaded machine OHIF 3.13 may leave the SR's annotations
    undrawn until the question is answered; where they are drawn already, nothing is done."""
    prompt = page.get_by_text("Do you want to continue tracking measurements for this study?")
    try:
        expect(label.or_(prompt)).to_be_visible(timeout=LOAD_MS)
    except AssertionError:
        return  # neither: the assertion that follows says so
    if not label.is_visible() and prompt.is_visible():
        page.get_by_role("button", name="No", exact=True).click()
