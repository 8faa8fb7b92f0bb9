"""Connection accounting of the DICOM listeners, so that no peer can starve the receiver.

* Only *established* associations count towards the association limit
  (``RADIANT_DICOM_MAX_ASSOCIATIONS``); a TCP connection that has not completed its association
  is *pending*.
* A pending connection has a deadline: the ARTIM timer (PS3.8 9.1.5), started when the
  connection is accepted, covers the TLS handshake and the whole A-ASSOCIATE-RQ. When it
  expires the socket is shut down whatever the peer is sending (one byte every few seconds
  included): it is a deadline, not a per-read timeout.
* At most ``max_pending_per_ip`` pending connections per client address: the next one is
  closed at once. At most ``max_pending`` pending connections in all: the oldest is closed to
  make room, so a new connection (a scanner's) always gets its chance.
* An established association has a deadline too, set by its reader (the idle timeout: the next
  PDU must have arrived whole by then) and cleared while the appliance works on a request.

One reaper thread enforces every deadline by shutting the socket down, which ends the blocked
read of the connection's own thread.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from dataclasses import dataclass, field

REAP_INTERVAL_S = 0.2
# The connection's own reads time out at the deadline (and answer an A-ABORT where one is due);
# the reaper is the backstop for what a read timeout cannot bound (a TLS handshake that keeps
# trickling, a send the peer never reads), so it acts a little later.
REAP_GRACE_S = 1.0


@dataclass(eq=False)
class Connection:
    """One accepted TCP connection as the gate sees it."""

    sock: socket.socket
    ip: str
    deadline: float
    established: bool = False
    expired: bool = False
    accepted: float = field(default_factory=time.monotonic)


def shut(sock: socket.socket) -> None:
    """Shut both directions down at the TCP level (an SSLSocket's own ``shutdown`` would drop
    its TLS object under the thread reading from it)."""
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Gate:
    """Pending and established connections of one or more listeners; thread-safe."""

    def __init__(
        self,
        *,
        max_associations: int,
        max_pending: int,
        max_pending_per_ip: int,
        artim_s: float,
    ) -> None:
        self.max_associations = max_associations
        self.max_pending = max_pending
        self.max_pending_per_ip = max_pending_per_ip
        self.artim_s = artim_s
        self._lock = threading.Lock()
        self._connections: dict[Connection, None] = {}  # insertion order: oldest first
        self._established = 0
        self._users = 0
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self.closed_pending = 0  # connections closed for the per-address or total limit
        self.expired = 0  # connections shut down at their deadline

    # -- life cycle (one reaper for every listener sharing the gate) ----------------------------

    def open(self) -> None:
        with self._lock:
            self._users += 1
            if self._reaper is None:
                self._stop.clear()
                self._reaper = threading.Thread(
                    target=self._reap_loop, name="dicom-reaper", daemon=True
                )
                self._reaper.start()

    def close(self) -> None:
        with self._lock:
            self._users -= 1
            reaper = self._reaper if self._users <= 0 else None
            if reaper is not None:
                self._reaper = None
                self._stop.set()
        if reaper is not None:
            reaper.join(5.0)

    # -- accounting -----------------------------------------------------------------------------

    def admit(self, sock: socket.socket, ip: str) -> Connection | None:
        """Register a just-accepted connection, or None if its address has too many pending."""
        victim: Connection | None = None
        with self._lock:
            pending = [c for c in self._connections if not c.established and not c.expired]
            if sum(1 for c in pending if c.ip == ip) >= self.max_pending_per_ip:
                self.closed_pending += 1
                return None
            if len(pending) >= self.max_pending:
                victim = pending[0]
                victim.expired = True
                self.closed_pending += 1
            conn = Connection(sock, ip, time.monotonic() + self.artim_s)
            self._connections[conn] = None
        if victim is not None:
            shut(victim.sock)
        return conn

    def establish(self, conn: Connection) -> bool:
        """Count ``conn`` as an established association; False if the limit is reached."""
        with self._lock:
            if conn.expired or self._established >= self.max_associations:
                return False
            conn.established = True
            conn.deadline = math.inf
            self._established += 1
            return True

    def release(self, conn: Connection) -> None:
        with self._lock:
            if conn in self._connections:
                del self._connections[conn]
                if conn.established:
                    self._established -= 1

    def set_deadline(self, conn: Connection, seconds: float | None) -> None:
        """Shut ``conn`` down ``seconds`` from now (None: no deadline)."""
        conn.deadline = math.inf if seconds is None else time.monotonic() + seconds

    def remaining(self, conn: Connection) -> float:
        """Seconds left before the deadline (at least a small positive number, for timeouts)."""
        return max(conn.deadline - time.monotonic(), 0.001)

    @property
    def established(self) -> int:
        with self._lock:
            return self._established

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(1 for c in self._connections if not c.established)

    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    # -- the reaper -----------------------------------------------------------------------------

    def reap(self, grace: float = REAP_GRACE_S) -> int:
        """Shut down every connection more than ``grace`` seconds past its deadline; how many."""
        now = time.monotonic() - grace
        with self._lock:
            due = [c for c in self._connections if not c.expired and c.deadline <= now]
            for conn in due:
                conn.expired = True
            self.expired += len(due)
        for conn in due:
            shut(conn.sock)
        return len(due)

    def _reap_loop(self) -> None:
        while not self._stop.wait(REAP_INTERVAL_S):
            self.reap()
