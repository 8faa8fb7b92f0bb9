"""Debian's Chromium driven by Playwright, and the checks every screen must pass: touch targets
of at least 48x48 CSS px and no horizontal scrolling at 1280x800.

Only Debian's browser is used (``/usr/bin/chromium``, package ``chromium`` of the ``e2e`` apt
group); Playwright's own browser downloads are never run.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WIDTH, HEIGHT = 1280, 800
VIEWPORT = ViewportSize(width=WIDTH, height=HEIGHT)
MIN_TARGET_PX = 48.0
_SHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


# Reports every Content-Security-Policy violation of every document to the test (the binding is
# exposed by the page fixture), from before the page's own scripts run.
CSP_LISTENER_JS = r"""
document.addEventListener('securitypolicyviolation', (e) => {
  const report = `${e.effectiveDirective} blocked ${e.blockedURI || 'inline'}`
    + ` at ${e.sourceFile || document.location.pathname}:${e.lineNumber}`
    + ` (${(e.sample || '').slice(0, 80)})`;
  if (window.__radiantCspViolation) window.__radiantCspViolation(report);
});
"""


def launch(playwright: Playwright, spki_pins: list[str] | None = None) -> Browser:
    """Headless Debian Chromium; a fresh temporary profile per launch (Playwright's default).

    ``spki_pins``: base64 SHA-256 of public keys whose certificates Chromium accepts although
    no system authority signed them (how a self-signed box certificate is trusted; every other
    certificate error still fails the page)."""
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: install Debian's chromium with "
            "`.venv/bin/python -m provisioning.packages ensure e2e` (./just test does this)"
        )
    args = list(CHROMIUM_ARGS)
    if spki_pins:
        args.append(f"--ignore-certificate-errors-spki-list={','.join(spki_pins)}")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)


def ensure_viewport(page: Page) -> None:
    """Put the page back to 1280x800 if a test changed it."""
    if page.viewport_size != VIEWPORT:
        page.set_viewport_size(VIEWPORT)


def wait_for_nicegui(page: Page, timeout_ms: float = 30_000) -> None:
    """Wait until the NiceGUI page has connected its websocket (events and updates work)."""
    page.wait_for_function("() => window.did_handshake === true", timeout=timeout_ms)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise AssertionError(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def save_shot(page: Page, folder: Path, name: str) -> Path:
    """``<folder>/<name>.png``: the 1280x800 viewport as the user sees it (no full-page stitch)."""
    if not _SHOT_NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r}: letters, digits, '-', '_', '.' only")
    ensure_viewport(page)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False, animations="disabled", caret="hide")
    size = png_size(path)
    if size != (WIDTH, HEIGHT):
        raise AssertionError(f"{path} is {size[0]}x{size[1]}, not {WIDTH}x{HEIGHT}")
    return path


# Everything a finger can press. Elements with a Vue click listener leave no trace in the DOM, so
# the outermost element showing a pointer cursor counts too (Quasar's clickable items, chips and
# NiceGUI's `.on('click')` with `cursor-pointer`).
_MEASURE_JS = r"""
(minSize) => {
  const SELECTOR = [
    'button', 'a[href]', 'input:not([type=hidden])', 'select', 'textarea', 'summary',
    '[role=button]', '[role=link]', '[role=tab]', '[role=checkbox]', '[role=radio]',
    '[role=switch]', '[role=slider]', '[role=menuitem]', '[role=option]', '[role=combobox]',
    '[onclick]', '[tabindex]:not([tabindex^="-"])', '[contenteditable=""]',
    '[contenteditable=true]',
    '.q-btn', '.q-item--clickable', '.q-chip--clickable', '.q-tab', '.q-toggle', '.q-checkbox',
    '.q-radio', '.q-slider', '.q-select',
  ].join(',');
  const candidates = new Set(document.querySelectorAll(SELECTOR));
  for (const el of document.body.querySelectorAll('*')) {
    const parent = el.parentElement;
    if (getComputedStyle(el).cursor === 'pointer'
        && !(parent && getComputedStyle(parent).cursor === 'pointer')) {
      candidates.add(el);
    }
  }
  // A form field's native input (or a select's arrow) is only part of what a finger presses:
  // measure the field.
  const NATIVE = 'input, textarea, select, [role=combobox], .q-field__native, '
    + '.q-select__dropdown-icon';
  const target = (el) => {
    if (el.matches(NATIVE)) {
      const control = el.closest('.q-field') && el.closest('.q-field').querySelector(
        '.q-field__control');
      if (control) return control;
    }
    return el;
  };
  const why_hidden = (el, r) => {
    if (!el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) return 'invisible';
    if (r.width === 0 || r.height === 0) return 'zero size';
    const own = getComputedStyle(el);
    if (own.clip !== 'auto' && own.clip !== '' && own.position.match(/absolute|fixed/)) {
      return 'clipped';
    }
    if (/^inset\((50|100)%\)$/.test(own.clipPath)) return 'clipped';
    if (r.right + window.scrollX <= 0 || r.bottom + window.scrollY <= 0) return 'off screen';
    // Cut away entirely by an ancestor that hides its overflow on an axis (one that scrolls
    // does not count: scrolling reaches the element). Only ancestors on the containing-block
    // chain clip: an absolutely positioned element escapes static ancestors, a fixed one all.
    let left = r.left, top = r.top, right = r.right, bottom = r.bottom;
    let position = own.position;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const s = getComputedStyle(p);
      const containing = s.position !== 'static' || s.transform !== 'none'
        || s.filter !== 'none' || s.contain.includes('paint');
      if (position === 'fixed' && s.transform === 'none' && s.filter === 'none') continue;
      if (position === 'absolute' && !containing) continue;
      const q = p.getBoundingClientRect();
      if (/hidden|clip/.test(s.overflowX)) {
        left = Math.max(left, q.left); right = Math.min(right, q.right);
      }
      if (/hidden|clip/.test(s.overflowY)) {
        top = Math.max(top, q.top); bottom = Math.min(bottom, q.bottom);
      }
      if (right - left < 1 || bottom - top < 1) return 'clipped by ' + p.tagName.toLowerCase();
      if (s.position !== 'static') position = s.position;
    }
    return null;
  };
  const text = (el) => {
    const own = el.tagName === 'INPUT' && !/^(button|submit|reset)$/.test(el.type)
      ? `[${el.type}]` : (el.innerText || el.textContent || el.value);
    const label = el.getAttribute('aria-label') || el.getAttribute('title')
      || el.getAttribute('placeholder') || own || '';
    return String(label).replace(/\s+/g, ' ').trim().slice(0, 50);
  };
  const seen = new Set();
  const measured = [];
  const skipped = [];
  for (const candidate of candidates) {
    const el = target(candidate);
    if (seen.has(el)) continue;
    seen.add(el);
    const r = el.getBoundingClientRect();
    const hidden = why_hidden(el, r);
    const item = {
      tag: el.tagName.toLowerCase(),
      id: el.id || '',
      role: el.getAttribute('role') || '',
      classes: Array.from(el.classList).slice(0, 6).join(' '),
      text: text(el),
      width: Math.round(r.width * 10) / 10,
      height: Math.round(r.height * 10) / 10,
      x: Math.round(r.left + window.scrollX),
      y: Math.round(r.top + window.scrollY),
    };
    if (hidden) { item.hidden = hidden; skipped.push(item); continue; }
    item.small = item.width < minSize || item.height < minSize;
    measured.push(item);
  }
  return {measured, skipped};
}
"""


def measure_targets(page: Page, min_size: float = MIN_TARGET_PX) -> dict[str, list[dict[str, Any]]]:
    """Every clickable element of the page at 1280x800: ``measured`` (visible, each with
    ``small``) and ``skipped`` (with the reason it is not shown: zero size, invisible, clipped,
    off screen)."""
    ensure_viewport(page)
    result: dict[str, list[dict[str, Any]]] = page.evaluate(_MEASURE_JS, min_size)
    return result


def describe_target(item: dict[str, Any]) -> str:
    name = item["tag"] + (f"#{item['id']}" if item["id"] else "")
    role = f" role={item['role']}" if item["role"] else ""
    return (
        f"{name}{role} {item['text']!r} class={item['classes']!r}: "
        f"{item['width']:g}x{item['height']:g} at ({item['x']}, {item['y']})"
    )


def assert_touch_targets(page: Page, min_size: float = MIN_TARGET_PX) -> int:
    """Fail listing every visible clickable element smaller than ``min_size`` x ``min_size`` CSS
    px at 1280x800; returns how many were measured (all big enough)."""
    result = measure_targets(page, min_size)
    small = [item for item in result["measured"] if item["small"]]
    if small:
        lines = "\n  ".join(describe_target(item) for item in small)
        raise AssertionError(
            f"{len(small)} of {len(result['measured'])} clickable elements on {page.url} are "
            f"smaller than {min_size:g}x{min_size:g} CSS px at {WIDTH}x{HEIGHT}:\n  {lines}"
        )
    return len(result["measured"])


_WIDE_JS = r"""
(limit) => {
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right + window.scrollX > limit + 0.5) {
      wide.push(`${el.tagName.toLowerCase()}.${Array.from(el.classList).slice(0, 4).join('.')}`
        + ` right edge ${Math.round(r.right + window.scrollX)}`);
    }
  }
  return {
    scrollWidth: document.scrollingElement.scrollWidth,
    wide: wide.slice(0, 15),
  };
}
"""


def no_horizontal_scroll(page: Page) -> None:
    """Fail when the document scrolls sideways at 1280x800 (scrollWidth > 1280), naming the
    elements that stick out."""
    ensure_viewport(page)
    result: dict[str, Any] = page.evaluate(_WIDE_JS, WIDTH)
    if result["scrollWidth"] > WIDTH:
        lines = "\n  ".join(result["wide"])
        raise AssertionError(
            f"{page.url} scrolls horizontally at {WIDTH}x{HEIGHT}: document width "
            f"{result['scrollWidth']} px; elements past the right edge:\n  {lines}"
        )


def save_shot_sized(page: Page, folder: Path, name: str) -> Path:
    """``<folder>/<name>.png`` at the page's current viewport size (a test that looks at a
    screen at other sizes than 1280x800)."""
    if not _SHOT_NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r}: letters, digits, '-', '_', '.' only")
    size = page.viewport_size
    assert size is not None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False, animations="disabled", caret="hide")
    if png_size(path) != (size["width"], size["height"]):
        raise AssertionError(f"{path} is {png_size(path)}, not the viewport {size}")
    return path


# Visible texts Quasar cuts with an ellipsis when they do not fit: field labels, the value a
# select shows, button, chip, tab and list item texts (the screen's own words; a data cell of
# the worklist table, e.g. a long MRN, may end in an ellipsis).
_TRUNCATED_JS = r"""
() => {
  const selector = ['.q-field__label', '.q-field__native > span', '.q-field__native',
    '.q-btn__content .block', '.q-btn__content', '.q-chip__content', '.q-tab__label',
    '.q-item__label'].join(',');
  const cut = [];
  for (const el of document.querySelectorAll(selector)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    if (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') continue;
    if (!(el.textContent || '').trim()) continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      cut.push(`${el.className} ${JSON.stringify((el.textContent || '').trim().slice(0, 60))}`
        + `: ${el.scrollWidth} px of text in ${el.clientWidth} px`);
    }
  }
  return cut;
}
"""


def truncated_labels(page: Page) -> list[str]:
    """Every visible label, select value, button, chip, tab or list text whose text is wider
    than its box at 1280x800 (shown cut off with an ellipsis), described."""
    ensure_viewport(page)
    found: list[str] = page.evaluate(_TRUNCATED_JS)
    return found
