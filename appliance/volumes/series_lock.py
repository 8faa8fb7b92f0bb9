"""One build of a series' volumes at a time.

A build removes the files under its series' prefix that its own rows do not name (what an
interrupted build left). Two builds of one series at once would therefore remove each other's
new files, and the later commit would leave ``ready`` rows without files. Only one job runner
works on a database (its ``flock``), so a lock per series in this process serializes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


class KeyedLocks:
    """A re-entrant lock per key, kept only while someone holds it or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.RLock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock for the block, waiting for another holder first."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.RLock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        """How many keys are held or waited for."""
        with self._guard:
            return len(self._locks)


#: The builds of this process, by series id.
BUILDS = KeyedLocks()


def series_build_lock(series_id: str) -> AbstractContextManager[None]:
    """Hold the build lock of a series."""
    return BUILDS.hold(series_id)
