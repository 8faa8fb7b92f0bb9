"""OHIF in Debian's Chromium reads a study beside its prior: the PCIR set (a patient's CR of
2001 and CT of 1995, among other patients' studies) stored over STOW-RS; a radiologist opens
the CR from its report screen and OHIF shows it and the CT side by side, each viewport
rendering images of its own study."""

from __future__ import annotations

from urllib.parse import unquote

import numpy as np
import pytest
from playwright.sync_api import Locator, Page, expect

from appliance.db.connection import open_database
from tests.dicom_files import instance_files
from tests.e2e.server import ApplianceServer
from tests.e2e.test_ohif import LOAD_MS, PASSWORD, _pixels, _sign_in, _stow
from ui.ohif import COMPARE_PROTOCOL, default_dist
from ui.ohif import study_url as ohif_study_url

pytestmark = pytest.mark.e2e
CURRENT = "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.1"  # CR, 2001-01-01
PRIOR = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1"  # CT, 1995-09-03, same patient
# Each OHIF viewport showing an image: where it is (left, top) and its WADO-RS image id
# (wadors:.../studies/{study}/series/...), which names the study.
_SHOWN_JS = """() => window.cornerstone.getRenderingEngines()
  .flatMap((engine) => engine.getViewports())
  .filter((v) => v.getCurrentImageId && v.getCurrentImageId())
  .map((v) => {
    const box = v.element.getBoundingClientRect();
    return [Math.round(box.left), Math.round(box.top), v.getCurrentImageId()];
  })"""


@pytest.fixture(scope="module")
def stored(appliance_server: ApplianceServer) -> str:
    """The PCIR set stored; the id of the current study (its report screen's address)."""
    if not (default_dist() / "index.html").is_file():
        pytest.skip("OHIF is not installed: ./just ohif")
    appliance_server.add_user("reader", "radiologist", PASSWORD)
    _stow(appliance_server, instance_files("dicomdir_pcir_3patients_prior_current"))
    db = open_database(appliance_server.data_dir / "radiant.db")
    try:
        row = db.execute("SELECT id FROM studies WHERE study_uid = ?", (CURRENT,)).fetchone()
    finally:
        db.conn.close()
    return str(row[0])


def _left(viewport: Locator) -> int:
    box = viewport.bounding_box()
    assert box is not None
    return round(box["x"])


def _top(viewport: Locator) -> int:
    box = viewport.bounding_box()
    assert box is not None
    return round(box["y"])


def _study_of(image_id: str) -> str:
    return unquote(image_id).split("/studies/")[1].split("/")[0]


def test_the_prior_opens_beside_the_current_study(
    appliance_server: ApplianceServer, page: Page, stored: str, shot: object
) -> None:
    page.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
    _sign_in(page)
    # the worklist's button on the current study's card, then the report screen's
    card = page.locator(f'[data-testid=study-card][data-study="{stored}"]')
    card.get_by_test_id("open-ohif").click()
    page.wait_for_url("**/ohif/viewer?**", timeout=30_000)
    assert unquote(page.url).endswith(unquote(ohif_study_url(CURRENT, PRIOR)))
    page.goto(f"/report/{stored}")
    page.get_by_test_id("open-ohif").first.click()
    page.wait_for_url("**/ohif/viewer?**", timeout=30_000)
    assert CURRENT in unquote(page.url) and PRIOR in unquote(page.url)
    assert COMPARE_PROTOCOL in unquote(page.url)
    # OHIF's compare protocol: the current study's series in the left column, the prior's in
    # the right one (1x2, or 2x2 when a study has two image series: this CR has three)
    viewports = page.locator("[data-viewport-uid]")
    expect(viewports.first.locator("canvas").first).to_be_visible(timeout=LOAD_MS)
    page.wait_for_function(f"() => ({_SHOWN_JS})().length >= 2", timeout=LOAD_MS)
    page.wait_for_timeout(3000)
    shown = page.evaluate(_SHOWN_JS)
    columns: dict[int, set[str]] = {}
    for left, _, image_id in shown:
        columns.setdefault(left, set()).add(_study_of(image_id))
    assert [columns[left] for left in sorted(columns)] == [{CURRENT}, {PRIOR}]
    # the top row: current | prior, both rendered, and not the same picture
    top = min(t for _, t, _ in shown)
    row = sorted((v for v in viewports.all() if _top(v) == top), key=_left)
    assert len(row) == 2
    current, prior = (_pixels(v) for v in row)
    assert current.std() > 10 and prior.std() > 10, "a viewport is blank"
    height, width = min(current.shape[0], prior.shape[0]), min(current.shape[1], prior.shape[1])
    difference = np.abs(current[:height, :width] - prior[:height, :width]).mean()
    assert difference > 1, "both viewports show the same picture"
    if callable(shot):
        shot(page, "13-ohif-prior-current")
