"""The viewer's browser side: fitting the image, wheel, swipe, pinch, drag and keys.

- Fit: the image plate takes the largest rectangle of the image's display aspect that the
  viewport holds (again on every resize); the overlay box covers exactly that rectangle, its
  type a little smaller on a small image.
- Zoom (pinch with two fingers, or the buttons) scales the plate in the browser. Zoomed in,
  one finger (or the mouse) drags the image around, never further than its edges; at 100% or
  less a drag keeps the toolbar's meaning: scroll slices (``radiant_slice`` events) or drag the
  window centre/width (``radiant_window`` events, which carry the preset generation ``gen`` so
  a drag begun before a preset cannot override it). The zoom figure in the overlay says when a
  drag moves the image.
- Keys: arrows step one slice, Page Up/Down ten, Home/End go to the first/last slice
  (``radiant_key`` events); their default action, scrolling the page, is prevented. Keys typed
  into a field or a dialog are left alone.
"""

GESTURES_JS = """
<script>
window.radiantViewerAttach = function (id, texts, tries) {
  const el = document.getElementById('c' + id);
  if (!el) {
    // not mounted yet (a busy browser or server): try again, for up to a minute
    const left = tries === undefined ? 600 : tries;
    if (left > 0) setTimeout(() => window.radiantViewerAttach(id, texts, left - 1), 100);
    return;
  }
  if (el.dataset.attached) return;
  el.dataset.attached = '1';
  const stage = el.querySelector('.radiant-stage');
  const plate = el.querySelector('.radiant-plate');
  const box = el.querySelector('.radiant-overlay-box');
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const state = {mode: 'scroll', zoom: 1, panX: 0, panY: 0, rect: {x: 0, y: 0, w: 1, h: 1},
                 center: null, width: null, gen: 0, texts: texts || {},
                 pointers: new Map(), acc: 0, pinch: null};
  state.apply = () => {
    if (state.zoom <= 1) {
      state.panX = 0; state.panY = 0;
    } else {
      const mx = state.rect.w * (state.zoom - 1) / 2, my = state.rect.h * (state.zoom - 1) / 2;
      state.panX = clamp(state.panX, -mx, mx); state.panY = clamp(state.panY, -my, my);
    }
    plate.style.transform = 'translate(' + state.panX + 'px, ' + state.panY + 'px) scale('
      + state.zoom + ')';
    const percent = Math.round(state.zoom * 100) + '%';
    const label = el.querySelector('.radiant-zoom');
    if (label) label.textContent = state.zoom > 1 && state.texts.pan
      ? state.texts.pan.replace('{percent}', percent) : percent;
  };
  state.layout = () => {
    const W = stage.clientWidth, H = stage.clientHeight;
    let aspect = parseFloat(plate.dataset.aspect);
    if (!(aspect > 0) || !isFinite(aspect)) aspect = 1;
    let w = W, h = W / aspect;
    if (h > H) { h = H; w = H * aspect; }
    w = Math.max(1, Math.floor(w)); h = Math.max(1, Math.floor(h));
    const x = Math.floor((W - w) / 2), y = Math.floor((H - h) / 2);
    state.rect = {x: x, y: y, w: w, h: h};
    // Smaller type on a small image (a wide radiograph), so the corners keep their lines.
    box.style.fontSize = clamp(Math.floor(h / 27), 11, 15) + 'px';
    for (const item of [plate, box]) {
      item.style.left = x + 'px'; item.style.top = y + 'px';
      item.style.width = w + 'px'; item.style.height = h + 'px';
    }
    state.apply();
  };
  state.setWindow = (center, width, gen) => {
    state.center = center; state.width = width; state.gen = gen;
  };
  state.dragWindow = (dx, dy) => {
    if (state.center === null || state.width === null) return;
    const k = Math.max(0.5, state.width / 256);
    state.width = clamp(state.width + dx * k, 1, 2000000);
    state.center = clamp(state.center + dy * k, -1000000, 1000000);
    emitEvent('radiant_window', {center: state.center, width: state.width, gen: state.gen});
  };
  state.zoomBy = (factor) => { state.zoom = clamp(state.zoom * factor, 0.5, 8); state.apply(); };
  state.reset = () => { state.zoom = 1; state.apply(); };
  window.radiantViewer = state;
  new ResizeObserver(() => state.layout()).observe(stage);
  new MutationObserver(() => state.layout()).observe(plate, {attributes: true,
    attributeFilter: ['data-aspect']});
  plate.addEventListener('load', () => state.layout(), true);
  el.addEventListener('wheel', (e) => {
    e.preventDefault();
    emitEvent('radiant_slice', e.deltaY > 0 ? 1 : -1);
  }, {passive: false});
  el.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    try { el.setPointerCapture(e.pointerId); } catch (err) { /* pointer already gone */ }
    state.pointers.set(e.pointerId, {x: e.clientX, y: e.clientY});
    state.acc = 0;
    if (state.pointers.size === 2) {
      const [a, b] = [...state.pointers.values()];
      state.pinch = {d: Math.max(1, Math.hypot(a.x - b.x, a.y - b.y)), z: state.zoom,
                     x: (a.x + b.x) / 2, y: (a.y + b.y) / 2, panX: state.panX,
                     panY: state.panY};
    }
  });
  el.addEventListener('pointermove', (e) => {
    const prev = state.pointers.get(e.pointerId);
    if (!prev) return;
    const cur = {x: e.clientX, y: e.clientY};
    state.pointers.set(e.pointerId, cur);
    if (state.pointers.size >= 2 && state.pinch) {
      const [a, b] = [...state.pointers.values()];
      const d = Math.hypot(a.x - b.x, a.y - b.y);
      state.zoom = clamp(state.pinch.z * d / state.pinch.d, 0.5, 8);
      state.panX = state.pinch.panX + (a.x + b.x) / 2 - state.pinch.x;
      state.panY = state.pinch.panY + (a.y + b.y) / 2 - state.pinch.y;
      state.apply();
      return;
    }
    if (state.pinch) return;  // one finger left of a pinch: wait for it to lift
    const dx = cur.x - prev.x, dy = cur.y - prev.y;
    if (state.zoom > 1) {
      state.panX += dx; state.panY += dy;
      state.apply();
      return;
    }
    if (state.mode === 'window') {
      state.dragWindow(dx, dy);
      return;
    }
    state.acc += dy;
    while (Math.abs(state.acc) >= 16) {
      const step = state.acc > 0 ? 1 : -1;
      state.acc -= step * 16;
      emitEvent('radiant_slice', step);
    }
  });
  const up = (e) => {
    state.pointers.delete(e.pointerId);
    if (state.pointers.size === 0) state.pinch = null;
  };
  el.addEventListener('pointerup', up);
  el.addEventListener('pointercancel', up);
  const KEYS = {ArrowUp: 'previous', ArrowLeft: 'previous', ArrowDown: 'next',
                ArrowRight: 'next', PageUp: 'page_up', PageDown: 'page_down', Home: 'first',
                End: 'last'};
  document.addEventListener('keydown', (e) => {
    const name = KEYS[e.key];
    if (!name || e.altKey || e.ctrlKey || e.metaKey) return;
    const target = e.target;
    if (target && target.closest && target.closest(
      'input, textarea, select, [contenteditable], .q-dialog, .q-menu')) return;
    e.preventDefault();
    e.stopPropagation();
    emitEvent('radiant_key', name);
  }, true);
  state.layout();
};
</script>
"""
