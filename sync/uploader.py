"""The object worker: drains ``sync_queue`` into the bucket with rclone, in batches.

One batch: claim rows, write their keys to a ``--files-from`` list, ``rclone copy`` the data
dir's listed files to the ``files`` remote in one rclone process, several uploads at once
(retried with tenacity's exponential back-off). Verification: rclone hashes each upload as it
sends it (through crypt, the encrypted bytes) and compares that with the hash the bucket
reports for the stored object, failing the file on a mismatch; a file whose log says so is
verified without a second pass. Every other file of the batch (one rclone skipped as already
there, or stored without a comparable hash) is verified remotely as before (``rclone
cryptcheck`` through crypt: size and hash of the encrypted copy against the local file;
``rclone check`` without encryption). Only a file verified one way or the other becomes
``done``. When rclone fails part-way through a batch, the files it had already confirmed by
hash are ``done`` all the same; if the bucket went away the other rows go back to ``pending``
uncounted, on other failures they become ``failed`` with the error, to be retried after a
growing pause. Nothing is ever dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from appliance.config import Settings
from appliance.logs import get_logger
from sync import layout
from sync import queue as sync_queue
from sync.queue import QueueItem
from sync.rclone import FILES, Rclone, RcloneError, confirmed_uploads

log = get_logger("radiant.sync.uploader")
BATCH_FILES = 500
BATCHES_IN_FLIGHT = 2  # rclone processes uploading at once
BATCH_BYTES = 1 << 30
COPY_ATTEMPTS = 3


@dataclass
class DrainReport:
    uploaded: int = 0
    uploaded_bytes: int = 0
    failed: int = 0
    forgotten: int = 0
    released: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


class Uploader:
    """Uploads and verifies queued files; ``reachable()`` re-probes the bucket after an error."""

    def __init__(
        self,
        settings: Settings,
        db: Callable[[], sqlite_utils.Database],
        rclone: Rclone,
        *,
        reachable: Callable[[], bool],
        stop: threading.Event | None = None,
        release_db: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        # closes the calling thread's connection of ``db`` (the extra drain workers' ones)
        self.release_db = release_db or (lambda: None)
        self.rclone = rclone
        self.reachable = reachable
        self.stop = stop or threading.Event()

    def drain(self, *, budget_s: float = 300.0) -> DrainReport:
        """Upload batches until the queue has nothing due, the budget is spent or stop is set:
        ``BATCHES_IN_FLIGHT`` batches at once (each claims its own rows), so that one rclone
        process starting or listing overlaps another one uploading."""
        deadline = time.monotonic() + budget_s
        gone = threading.Event()  # the bucket went away: every worker stops after its batch
        reports = [DrainReport() for _ in range(BATCHES_IN_FLIGHT)]
        workers = [
            threading.Thread(
                target=self._drain_worker,
                args=(report, deadline, gone),
                name=f"sync-upload-{n}",
                daemon=True,
            )
            for n, report in enumerate(reports[1:], start=1)
        ]
        for worker in workers:
            worker.start()
        self._drain_worker(reports[0], deadline, gone)
        for worker in workers:
            worker.join()
        total = DrainReport()
        for report in reports:
            total.uploaded += report.uploaded
            total.uploaded_bytes += report.uploaded_bytes
            total.failed += report.failed
            total.forgotten += report.forgotten
            total.released += report.released
            total.batches += report.batches
            total.errors += report.errors
        return total

    def _drain_worker(self, report: DrainReport, deadline: float, gone: threading.Event) -> None:
        """One worker of :meth:`drain`; it closes its thread's connection when it is not the
        caller's thread."""
        try:
            while not (self.stop.is_set() or gone.is_set()) and time.monotonic() < deadline:
                items = sync_queue.claim(
                    self.db(),
                    limit=BATCH_FILES,
                    max_bytes=BATCH_BYTES,
                    retry_base_s=self.settings.sync_interval_s,
                )
                if not items:
                    break
                report.batches += 1
                if not self._batch(items, report):
                    gone.set()  # wait for the next round
        finally:
            if threading.current_thread().name.startswith("sync-upload-"):
                self.release_db()

    def _batch(self, items: list[QueueItem], report: DrainReport) -> bool:
        db = self.db()
        present: list[QueueItem] = []
        for item in items:
            if (self.settings.data_dir / item.object_key).is_file():
                present.append(item)
            else:
                self._settle_missing(db, item, report)
        if not present:
            return True
        scratch = layout.scratch_dir(self.settings)
        list_file = scratch / f"batch-{threading.get_ident()}.txt"
        combined = scratch / f"check-{threading.get_ident()}.txt"
        copy_log = scratch / f"copy-{threading.get_ident()}.log"
        list_file.write_text("".join(f"{i.object_key}\n" for i in present), encoding="utf-8")
        combined.unlink(missing_ok=True)
        copy_log.unlink(missing_ok=True)
        try:
            confirmed = self._copy(list_file, copy_log)
            outcome = {i.object_key: "=" for i in present if i.object_key in confirmed}
            rest = [i for i in present if i.object_key not in confirmed]
            if rest:
                list_file.write_text("".join(f"{i.object_key}\n" for i in rest), "utf-8")
                self.rclone.verify(self.settings.data_dir, list_file, combined)
                outcome.update(_parse_combined(combined))
        except RcloneError as exc:
            return self._batch_failed(db, present, confirmed_uploads(copy_log), exc, report)
        finally:
            list_file.unlink(missing_ok=True)
            combined.unlink(missing_ok=True)
            copy_log.unlink(missing_ok=True)
        good = [i for i in present if outcome.get(i.object_key) == "="]
        bad = [i for i in present if outcome.get(i.object_key) != "="]
        marked = sync_queue.mark_done(db, good)
        report.uploaded += marked
        report.uploaded_bytes += sum(int(i.size or 0) for i in good)
        for item in bad:
            symbol = outcome.get(item.object_key)
            reason = _REASONS.get(symbol or "", "not reported by the verification")
            sync_queue.mark_failed(db, [item], f"remote copy {reason}")
            report.failed += 1
        if bad:
            report.errors.append(f"{len(bad)} files failed verification")
            log.warning("sync_verify_failed", files=len(bad))
        log.info("sync_batch_done", files=marked, failed=len(bad))
        return True

    def _batch_failed(
        self,
        db: sqlite_utils.Database,
        present: list[QueueItem],
        confirmed: set[str],
        exc: RcloneError,
        report: DrainReport,
    ) -> bool:
        """rclone failed part-way: the files it stored and confirmed by hash (any attempt)
        are done; the others go back to ``pending`` when the bucket is gone (False: stop the
        drain) or are failed with the error, to be retried after a pause."""
        good = [i for i in present if i.object_key in confirmed]
        rest = [i for i in present if i.object_key not in confirmed]
        report.uploaded += sync_queue.mark_done(db, good)
        report.uploaded_bytes += sum(int(i.size or 0) for i in good)
        if not self.reachable():
            sync_queue.release(db, rest)
            report.released += len(rest)
            log.info(
                "sync_batch_released", files=len(rest), done=len(good), reason="bucket unreachable"
            )
            return False
        sync_queue.mark_failed(db, rest, exc.detail)
        report.failed += len(rest)
        report.errors.append(exc.detail)
        log.warning("sync_batch_failed", files=len(rest), done=len(good), error=exc.detail)
        return True

    def _copy(self, list_file: Path, log_file: Path) -> set[str]:
        """Upload the batch; the keys whose upload rclone confirmed by hash (any attempt)."""
        base = max(self.settings.sync_interval_s / 2, 0.2)
        for attempt in Retrying(
            stop=stop_after_attempt(COPY_ATTEMPTS),
            wait=wait_exponential(multiplier=base, max=30),
            retry=retry_if_exception_type(RcloneError),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1 and (
                    self.stop.is_set() or not self.reachable()
                ):
                    raise RcloneError("copy", -1, "stopped or bucket unreachable")
                return self.rclone.copy_confirmed(
                    self.settings.data_dir, list_file, f"{FILES}:", log_file
                )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _settle_missing(
        self, db: sqlite_utils.Database, item: QueueItem, report: DrainReport
    ) -> None:
        """The file is not on disk: forget a replaced file; an evicted one was done before;
        a referenced local file that vanished is a failure for fsck to explain."""
        state = _reference(db, item.object_key)
        if state is None:
            sync_queue.forget(db, [item])
            report.forgotten += 1
        elif state == "remote":
            sync_queue.mark_done(db, [item])
        else:
            sync_queue.mark_failed(db, [item], "file missing locally; run `radiant fsck`")
            report.failed += 1


_REASONS = {
    "*": "differs from the local file",
    "-": "is missing in the bucket",
    "!": "could not be read for checking",
    "+": "exists only remotely",
}


def _parse_combined(path: Path) -> dict[str, str]:
    """``rclone check --combined`` lines: ``<symbol> <path>``."""
    outcome: dict[str, str] = {}
    if not path.exists():
        return outcome
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if len(line) > 2 and line[1] == " ":
            outcome[line[2:]] = line[0]
    return outcome


def _reference(db: sqlite_utils.Database, key: str) -> str | None:
    """``local``/``remote`` for a file the index still names, None when nothing does."""
    if key.startswith(layout.OBJECTS + "/"):
        storage_key = key[len(layout.OBJECTS) + 1 :]
        row = db.execute(
            "SELECT storage_state FROM instances WHERE storage_key = ? LIMIT 1", (storage_key,)
        ).fetchone()
        if row is not None:
            return str(row[0])
        row = db.execute(
            "SELECT 1 FROM volumes WHERE storage_key = ? LIMIT 1", (storage_key,)
        ).fetchone()
        return "local" if row is not None else None
    if key.startswith(layout.QUARANTINE + "/"):
        row = db.execute(
            "SELECT 1 FROM quarantine WHERE storage_path = ? LIMIT 1",
            (key[len(layout.QUARANTINE) + 1 :],),
        ).fetchone()
        return "local" if row is not None else None
    return None
