"""The viewer's browser side: wheel, swipe, pinch and drag gestures on the viewport.

It scrolls slices (``radiant_slice`` events), zooms the image in the browser and, in window
mode, drags window centre/width (``radiant_window`` events, shown at once in the overlay)."""

GESTURES_JS = """
<script>
window.radiantViewerAttach = function (id) {
  const el = document.getElementById('c' + id);
  if (!el || el.dataset.attached) return;
  el.dataset.attached = '1';
  const stage = el.querySelector('.radiant-stage');
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const state = {mode: 'scroll', zoom: 1, center: null, width: null, template: '',
                 pointers: new Map(), acc: 0, pinch: null};
  state.apply = () => {
    stage.style.transform = 'scale(' + state.zoom + ')';
    const zoom = el.querySelector('.radiant-zoom');
    if (zoom) zoom.textContent = Math.round(state.zoom * 100) + '%';
  };
  const shown = (v) => String(Math.round(v * 10) / 10);
  state.setWindow = (center, width, template) => {
    state.center = center; state.width = width; state.template = template;
  };
  state.dragWindow = (dx, dy) => {
    if (state.center === null || state.width === null) return;
    const k = Math.max(0.5, state.width / 256);
    state.width = clamp(state.width + dx * k, 1, 2000000);
    state.center = clamp(state.center + dy * k, -1000000, 1000000);
    const label = el.querySelector('.radiant-wl');
    if (label && state.template) label.textContent = state.template
      .replace('{center}', shown(state.center)).replace('{width}', shown(state.width));
    emitEvent('radiant_window', {center: state.center, width: state.width});
  };
  state.zoomBy = (factor) => { state.zoom = clamp(state.zoom * factor, 0.5, 8); state.apply(); };
  state.reset = () => { state.zoom = 1; state.apply(); };
  window.radiantViewer = state;
  el.addEventListener('wheel', (e) => {
    e.preventDefault();
    emitEvent('radiant_slice', e.deltaY > 0 ? 1 : -1);
  }, {passive: false});
  el.addEventListener('pointerdown', (e) => {
    el.setPointerCapture(e.pointerId);
    state.pointers.set(e.pointerId, {x: e.clientX, y: e.clientY});
    state.acc = 0;
    if (state.pointers.size === 2) {
      const [a, b] = [...state.pointers.values()];
      state.pinch = {d: Math.max(1, Math.hypot(a.x - b.x, a.y - b.y)), z: state.zoom};
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
      state.apply();
      return;
    }
    const dx = cur.x - prev.x, dy = cur.y - prev.y;
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
    if (state.pointers.size < 2) state.pinch = null;
  };
  el.addEventListener('pointerup', up);
  el.addEventListener('pointercancel', up);
  state.apply();
};
</script>
"""
