"""Sync benchmark (not a test): the appliance's replication against a plain ``rclone copy``, in
one run, on a local S3 server (``rclone serve s3`` on 127.0.0.1).

1. Database replication lag under a steady write load (``--rate`` commits per second for
   ``--seconds``). Litestream (the appliance's supervised child, sync-interval 1 s): a write's
   lag is the time from its commit until a ``litestream restore`` of the replica contains it
   (an upper bound: it includes the restore, whose median is printed). Peer: a loop that takes
   an SQLite backup of the database and uploads it with ``rclone copyto``; a write's lag is from
   its commit until the first upload that started after it has finished.
2. File upload throughput: the DICOM files of tests/data (``--copies`` times) drained from the
   sync queue by the appliance's worker (rclone crypt; a file counts as done once its upload is
   confirmed by hash) against ``rclone copy`` of the same files to the same server
   (unencrypted, unverified beyond rclone's own checks); ``--rounds`` of each, alternated.

Prints p50/p95 lag and MB/s for both, and the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.config import Mode, Settings  # noqa: E402
from appliance.context import prepare  # noqa: E402
from appliance.db.connection import open_database, transaction  # noqa: E402
from sync import litestream, queue, rclone  # noqa: E402
from sync.identity import sync_prefix  # noqa: E402
from sync.litestream import LitestreamSupervisor  # noqa: E402
from sync.manager import SyncManager  # noqa: E402
from sync.rclone import STORE, Rclone  # noqa: E402
from tests.dicom_files import DATA  # noqa: E402
from tests.sync_servers import rclone_s3  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Writer(threading.Thread):
    """Commits one row to ``bench_writes`` every 1/rate s and remembers each commit time."""

    def __init__(self, db_path: Path, rate: float, seconds: float, table: str) -> None:
        super().__init__(daemon=True)
        self.db_path, self.rate, self.seconds, self.table = db_path, rate, seconds, table
        self.committed: dict[int, float] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        db = open_database(self.db_path)
        db.execute(f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, payload TEXT)")
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < self.seconds:
            n += 1
            with transaction(db):
                db.execute(f"INSERT INTO {self.table} VALUES (?, ?)", (n, "x" * 200))  # noqa: S608
            with self.lock:
                self.committed[n] = time.monotonic()
            time.sleep(max(0.0, start + n / self.rate - time.monotonic()))
        db.conn.close()

    def snapshot(self) -> dict[int, float]:
        with self.lock:
            return dict(self.committed)


def litestream_lag(settings, rate: float, seconds: float, work: Path) -> tuple[list[float], float]:  # type: ignore[no-untyped-def]
    """Lag of each write under Litestream; also the median restore time (the resolution)."""
    writer = Writer(settings.db_path, rate, seconds, "bench_litestream")
    writer.start()
    lags: dict[int, float] = {}
    restores: list[float] = []
    out = work / "restored.db"
    while writer.is_alive() or len(lags) < len(writer.snapshot()):
        began = time.monotonic()
        out.unlink(missing_ok=True)
        try:
            litestream.restore(settings, output=out, timeout=60)
        except litestream.LitestreamError:
            time.sleep(0.2)
            continue
        ended = time.monotonic()
        restores.append(ended - began)
        conn = sqlite3.connect(out)
        try:
            top = conn.execute("SELECT MAX(id) FROM bench_litestream").fetchone()[0] or 0
        except sqlite3.OperationalError:
            top = 0
        conn.close()
        for n, committed in writer.snapshot().items():
            if n <= top and n not in lags:
                lags[n] = ended - committed
        if not writer.is_alive() and time.monotonic() - began > 120:
            break
    return list(lags.values()), statistics.median(restores) if restores else float("nan")


def plain_copy_lag(settings, rate: float, seconds: float, work: Path) -> list[float]:  # type: ignore[no-untyped-def]
    """Lag of each write when the database is backed up and ``rclone copyto``-ed in a loop."""
    writer = Writer(settings.db_path, rate, seconds, "bench_plain")
    writer.start()
    remote = Rclone(settings)
    target = f"{STORE}:{settings.sync_bucket}/bench-plain/radiant.db"
    copy = work / "backup.db"
    lags: dict[int, float] = {}
    while writer.is_alive() or len(lags) < len(writer.snapshot()):
        began = time.monotonic()
        seen = writer.snapshot()
        source = sqlite3.connect(settings.db_path)
        copy.unlink(missing_ok=True)
        dest = sqlite3.connect(copy)
        source.backup(dest)
        source.close()
        dest.close()
        remote.run("copyto", str(copy), target)
        ended = time.monotonic()
        for n, committed in seen.items():
            if committed <= began and n not in lags:
                lags[n] = ended - committed
    return list(lags.values())


def stage_files(settings, copies: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Copy tests/data's DICOM files ``copies`` times into the object store and queue them."""
    sources = [
        p
        for p in sorted(DATA.rglob("*"))
        if p.is_file() and p.stat().st_size > 132 and p.read_bytes()[128:132] == b"DICM"
    ]
    db = open_database(settings.db_path)
    count = size = 0
    with transaction(db):
        for copy in range(copies):
            for index, source in enumerate(sources):
                key = f"objects/bench/{copy}/{index:04d}.dcm"
                dest = settings.data_dir / key
                dest.parent.mkdir(parents=True, exist_ok=True)
                data = source.read_bytes()
                dest.write_bytes(data)
                queue.enqueue(db, key, "bench", len(data), hashlib.sha256(data).hexdigest())
                count += 1
                size += len(data)
    db.conn.close()
    return count, size


def upload_rounds(
    settings: Settings, manager: SyncManager, count: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Time the worker's drain of the queued files and a plain ``rclone copy`` of the same files,
    ``rounds`` times, alternating which goes first. Before each timing the page cache is written
    back (``os.sync``), so that neither pays for the other's (or the staging's) dirty pages;
    each drain goes to a box folder of its own (the rows queued again) and each plain copy to a
    folder of its own, so both always upload every file into an empty folder."""
    ours: list[float] = []
    plain: list[float] = []
    source = settings.data_dir / "objects" / "bench"
    remote = Rclone(settings)

    def drain(n: int) -> None:
        rclone.write_config(settings, prefix=f"{sync_prefix(settings)}-round-{n}")
        db = manager.ctx.pool.get()
        with transaction(db):
            db.execute("UPDATE sync_queue SET status = 'pending', attempts = 0")
        os.sync()
        began = time.monotonic()
        report = manager.uploader.drain(budget_s=3600)
        ours.append(time.monotonic() - began)
        assert report.uploaded == count and report.failed == 0, report

    def copy(n: int) -> None:
        os.sync()
        began = time.monotonic()
        remote.run(
            "copy",
            str(source),
            f"{STORE}:{settings.sync_bucket}/bench-plain/{n}",
            "--transfers",
            "4",
            "--checkers",
            "8",
        )
        plain.append(time.monotonic() - began)

    for n in range(rounds):
        if n % 2:
            copy(n)
            drain(n)
        else:
            drain(n)
            copy(n)
    return ours, plain


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="write load duration")
    parser.add_argument("--rate", type=float, default=10.0, help="commits per second")
    parser.add_argument("--copies", type=int, default=4, help="copies of tests/data's files")
    parser.add_argument("--rounds", type=int, default=3, help="timed uploads of each kind")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="radiant-bench-sync-"))
    try:
        with rclone_s3(work / "server") as server:
            settings = server.settings(work / "box", mode=Mode.ONLINE, sync_interval_s=1.0)
            ctx = prepare(settings)
            manager = SyncManager(ctx)
            manager._prepare()
            supervisor = LitestreamSupervisor(settings)
            supervisor.ensure_running()
            try:
                print(f"database: {args.rate:g} commits/s for {args.seconds:g} s", flush=True)
                ls_lags, restore_s = litestream_lag(settings, args.rate, args.seconds, work)
            finally:
                supervisor.stop()
            plain_lags = plain_copy_lag(settings, args.rate, args.seconds, work)

            count, size = stage_files(settings, args.copies)
            print(f"files: {count} files, {size / 1e6:.1f} MB, {args.rounds} rounds", flush=True)
            ours, plain = upload_rounds(settings, manager, count, args.rounds)
            manager.stop()
            ctx.pool.close_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def lag_line(name: str, lags: list[float]) -> str:
        return (
            f"  {name:<38} p50 {percentile(lags, 0.5):6.2f} s   p95 {percentile(lags, 0.95):6.2f} s"
            f"   ({len(lags)} writes)"
        )

    print("\nreplication lag (commit -> in the bucket)")
    print(lag_line("litestream (restore-observed)", ls_lags))
    print(f"  {'':<38} (observation: one restore, median {restore_s:.2f} s)")
    print(lag_line("plain: sqlite backup + rclone copyto", plain_lags))
    p50 = percentile(ls_lags, 0.5) / percentile(plain_lags, 0.5)
    p95 = percentile(ls_lags, 0.95) / percentile(plain_lags, 0.95)
    print(f"  ratio litestream/plain: p50 {p50:.2f}, p95 {p95:.2f}")
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    print("\nfile upload throughput (median of the rounds)")
    print(
        f"  {'appliance (crypt + verified, queue)':<38} {size / 1e6 / ours_s:7.1f} MB/s"
        f"   ({ours_s:.1f} s; rounds {_seconds(ours)} s)"
    )
    print(
        f"  {'plain rclone copy':<38} {size / 1e6 / plain_s:7.1f} MB/s"
        f"   ({plain_s:.1f} s; rounds {_seconds(plain)} s)"
    )
    print(f"  ratio appliance/plain: {plain_s / ours_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
