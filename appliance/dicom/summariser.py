"""Rate-limited events: the receiver audits a repeated association refusal at most once per
interval, counting the ones it left out (a flood of refusals must not become a flood of
database writes)."""

from __future__ import annotations

import math
import threading
import time


class Summariser:
    """At most one event per key per ``interval`` seconds; the others are counted."""

    MAX_KEYS = 10_000

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, ...], tuple[float, int]] = {}

    def repeated(self, key: tuple[str, ...]) -> int | None:
        """None: leave this one out; else how many were left out since the last one."""
        now = time.monotonic()
        with self._lock:
            last, left_out = self._seen.get(key, (-math.inf, 0))
            if now - last < self.interval:
                self._seen[key] = (last, left_out + 1)
                return None
            if len(self._seen) >= self.MAX_KEYS:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
            self._seen[key] = (now, 0)
            return left_out
