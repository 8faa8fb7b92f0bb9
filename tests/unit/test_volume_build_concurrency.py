"""The analysis reads a series' volume safely: two readers that need the volumes at once build
them once, and a lost volume file is built again.

Seen in a full run: the analysis of a study that had just become stable built the series'
volumes itself while the automatic ``volume`` job built them too. Each build removes the files
under the series' prefix that its own rows do not name, so one build removed the files of the
other before that one committed its rows: the series was left with ``ready`` rows whose NIfTI
files were gone, and the analysis failed ("kept being rebuilt")."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import FastAPI

from appliance.analysis.service import prepare_series
from appliance.context import AppContext
from appliance.volumes import service as volume_service
from appliance.volumes.series_lock import KeyedLocks
from tests.unit.test_volumes_api import CT_TILT, ingest

READERS = 3


def _builds(ctx: AppContext, series_id: str) -> int:
    row = (
        ctx.pool.get()
        .execute(
            "SELECT count(*) FROM audit_log WHERE action = 'volume.build' AND object_id = ?",
            (series_id,),
        )
        .fetchone()
    )
    return int(row[0])


def test_concurrent_readers_of_stale_volumes_build_them_once(app: FastAPI) -> None:
    ctx: AppContext = app.state.ctx
    (series_id,) = ingest(app, CT_TILT)
    before = _builds(ctx, series_id)
    start = threading.Barrier(READERS)
    results: list[Any] = []
    errors: list[BaseException] = []

    def read() -> None:
        start.wait()
        try:
            results.append(prepare_series(ctx, series_id, None))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == [] and len(results) == READERS
    assert _builds(ctx, series_id) - before == 1
    current = volume_service.current_volumes(ctx.pool.get(), series_id) or []
    ready = [v for v in current if v.status == "ready"]
    assert ready and all(volume_service.volume_file(ctx, v.id).is_file() for v in ready)
    keys = set(ctx.store.iter_keys(f"volumes/{series_id}/"))
    assert keys == {f"volumes/{series_id}/{v.id}.nii.gz" for v in ready}


def test_an_analysis_rebuilds_volumes_whose_file_was_lost(app: FastAPI) -> None:
    """Current rows whose NIfTI is gone (a disk fault, a hand clean-up): volumes are derived
    data, so the analysis builds them again instead of failing."""
    ctx: AppContext = app.state.ctx
    (series_id,) = ingest(app, CT_TILT)
    (lost,) = volume_service.build_for_series(ctx, series_id, volume_service.SYSTEM)
    volume_service.volume_file(ctx, lost.id).unlink()
    prepared = prepare_series(ctx, series_id, None)
    (now,) = volume_service.current_volumes(ctx.pool.get(), series_id) or []
    assert now.id != lost.id and volume_service.volume_file(ctx, now.id).is_file()
    assert prepared.shape[0] > 0


def test_series_locks_exclude_each_other_nest_and_are_dropped_when_free() -> None:
    locks = KeyedLocks()
    holders = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0}
    start = threading.Barrier(4)

    def hold(key: str) -> None:
        start.wait()
        for _ in range(300):
            with locks.hold(key), locks.hold(key):  # re-entrant: a build in current_or_build
                holders[key] += 1
                most[key] = max(most[key], holders[key])
                time.sleep(0)
                holders[key] -= 1

    threads = [threading.Thread(target=hold, args=(key,)) for key in ("a", "a", "a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert most == {"a": 1, "b": 1}
    assert len(locks) == 0  # no lock is kept for a series nobody builds
