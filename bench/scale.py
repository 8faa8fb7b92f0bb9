"""Scale benchmark (not a test): the API and the receiver with a full index against an empty one.

Two data dirs: a baseline holding one study (of ``--instances / --studies`` instances, so that
reads have something to read), one filled with ``--instances`` instances in ``--studies`` studies
(default 100,000 in 2,000; see ``bench/scale_fill.py`` for how: synthetic re-UIDed headers,
rows written by the ingest service's indexing step, shared pixel files). For each, a real
``radiant serve`` on 127.0.0.1 is measured with ``--clients`` concurrent clients (a bounded
asyncio httpx client, one bearer token): worklist pages, patient search, study reads, series
reads (the series of a study and the instances of a series), QIDO-RS studies (by PatientID, by
PatientName prefix, a page of 50), and C-FIND at study level
(pynetdicom, one association per client thread, at most 8; by PatientID, and by PatientName
prefix, whose matches grow with the index). Then one association sends ``--store`` re-UIDed
instances (C-STORE, pynetdicom) to each, three rounds alternated: the rate with the full index
over the rate with the baseline (target within 10 %). The bench's associations set TCP_NODELAY,
as the receiver's own sockets and bench-ingest's storescu do: with Nagle's algorithm on, the
second part of a client's request waits for the receiver's delayed ACK (about 40 ms per C-FIND
measured on Linux), which is the client's latency, not the index's. Prints p50/p99 per
request kind (target p99 < 100 ms for the worklist and search with 20 clients) and the ratios
full/baseline; the first row, ``/healthz`` under the same load, is the HTTP stack's own
floor. Usage: ``.venv/bin/python bench/scale.py [--instances N] [--studies N]``
(``just bench-scale``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.config import Settings  # noqa: E402
from appliance.dicom.pynetdicom_compat import set_nodelay  # noqa: E402
from bench import scale_fill  # noqa: E402
from tests.servers import RADIANT, clean_env, free_port  # noqa: E402

AE_TITLE = "RADIANT"
TARGET_P99_MS = 100.0
CFIND_ASSOCIATIONS = 8
FIND_AE = "BENCHFIND"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@contextmanager
def serve(data_dir: Path, work: Path) -> Iterator[tuple[int, int]]:
    """``radiant serve`` on the data dir, its output to a file: (http port, dicom port)."""
    http_port, dicom_port = free_port(), free_port()
    env = clean_env(
        RADIANT_DICOM_HOST="127.0.0.1",
        RADIANT_DICOM_PORT=str(dicom_port),
        RADIANT_DICOM_AE_TITLE=AE_TITLE,
        # query/retrieve answers configured peers only (the calling AE title at its address)
        RADIANT_DICOM_PEERS=f"{FIND_AE}@127.0.0.1:104",
        RADIANT_MIN_FREE_GB="0",
        TCP_NODELAY="1",
    )
    args = [*RADIANT, "serve", "--port", str(http_port), "--data-dir", str(data_dir)]
    with (work / f"serve-{data_dir.name}.log").open("wb") as log:
        process = subprocess.Popen(
            args, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"radiant serve did not start (see {log.name})")
                try:
                    httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=2.0)
                    break
                except httpx.HTTPError:
                    time.sleep(0.3)
            yield http_port, dicom_port
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def http_load(
    port: int, clients: int, requests: int, seed: int, patients: int
) -> dict[str, list[float]]:
    """``requests`` requests of each kind from ``clients`` concurrent clients; ms per kind."""
    return asyncio.run(_http_load(port, clients, requests, seed, patients))


async def _http_load(
    port: int, clients: int, requests: int, seed: int, patients: int
) -> dict[str, list[float]]:
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        login = await client.post(
            "/api/auth/token",
            data={"username": scale_fill.USER, "password": scale_fill.PASSWORD},
        )
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        listing = await client.get("/api/studies", params={"limit": 500})
        if listing.status_code != 200:
            raise RuntimeError(f"GET /api/studies: {listing.status_code} {listing.text[:300]}")
        first = listing.json()
        study_ids = [s["id"] for s in first["items"]] or [""]
        total = max(1, int(first["total"]))
        series_ids: list[str] = []
        for sid in study_ids[:20]:
            if sid:
                series = (await client.get(f"/api/studies/{sid}/series")).json()
                series_ids += [s["id"] for s in series]
        rng = random.Random(seed)  # noqa: S311 (request mix, not secrets)

        def worklist() -> str:
            page = rng.randrange(min(20, max(1, total // 50)))
            return f"/api/studies?limit=50&offset={page * 50}"

        def search() -> str:
            word = rng.choice(scale_fill.LAST_NAMES)[: rng.choice((3, 4, 6))].lower()
            return f"/api/patients?search={word}&limit=50"

        def worklist_search() -> str:
            return f"/api/studies?search={rng.choice(scale_fill.LAST_NAMES)[:5]}&limit=50"

        kinds: dict[str, Callable[[], str]] = {
            # the stack's floor under the same load: no database, no audit, no auth
            "no-op (/healthz)": lambda: "/healthz",
            "worklist page": worklist,
            "patient search": search,
            "worklist search": worklist_search,
            "study read": lambda: f"/api/studies/{rng.choice(study_ids)}",
            "series of a study": lambda: f"/api/studies/{rng.choice(study_ids)}/series",
            "instances of a series": lambda: (
                f"/api/series/{rng.choice(series_ids or [''])}/instances"
            ),
            # QIDO-RS (PS3.18 10.6), as OHIF's study list and a PACS ask
            "QIDO studies PatientID": lambda: (
                f"/dicom-web/studies?PatientID={scale_fill.patient_id(rng.randrange(patients))}"
            ),
            "QIDO studies name*": lambda: (
                f"/dicom-web/studies?PatientName={rng.choice(scale_fill.LAST_NAMES)[:4].upper()}*"
                "&limit=50"
            ),
            "QIDO studies page": lambda: (
                f"/dicom-web/studies?limit=50&offset={rng.randrange(min(20, total // 50 + 1)) * 50}"
            ),
        }
        results: dict[str, list[float]] = {}
        for kind, make in kinds.items():
            latencies: list[float] = []
            urls = [make() for _ in range(requests)]
            counts = await asyncio.gather(
                *(_worker(client, urls, latencies) for _ in range(clients))
            )
            failures = sum(counts)
            if failures:
                print(f"  {kind}: {failures} requests failed", flush=True)
            results[kind] = latencies
        return results


async def _worker(client: httpx.AsyncClient, urls: list[str], latencies: list[float]) -> int:
    """GET urls taken from the shared list until it is empty; returns how many failed."""
    failures = 0
    while urls:
        url = urls.pop()
        began = time.perf_counter()
        response = await client.get(url)
        latencies.append((time.perf_counter() - began) * 1000)
        failures += response.status_code >= 400
    return failures


def cfind_load(
    port: int, clients: int, requests: int, seed: int, patients: int
) -> dict[str, list[float]]:
    """C-FIND at study level, one association per client thread, alternating an exact
    PatientID (the patient's two studies) and a PatientName prefix wildcard (every study of
    the patients with such a name: more matches as the index grows)."""
    latencies: dict[str, list[float]] = {"C-FIND PatientID": [], "C-FIND PatientName*": []}
    lock = threading.Lock()
    per_client = max(1, requests // clients)

    def client(index: int) -> None:
        rng = random.Random(seed + index)  # noqa: S311
        ae = AE(ae_title=FIND_AE)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
        if not assoc.is_established:
            with lock:
                refused.append(index)
            return
        set_nodelay(assoc)
        try:
            for n in range(per_client):
                query = Dataset()
                query.QueryRetrieveLevel = "STUDY"
                query.PatientName = ""
                query.PatientID = ""
                if n % 2:
                    kind = "C-FIND PatientName*"
                    query.PatientName = rng.choice(scale_fill.LAST_NAMES)[:4].upper() + "*"
                else:
                    kind = "C-FIND PatientID"
                    query.PatientID = scale_fill.patient_id(rng.randrange(patients))
                for keyword in ("StudyInstanceUID", "StudyDate", "ModalitiesInStudy"):
                    setattr(query, keyword, "")
                began = time.perf_counter()
                final = None
                for status, _identifier in assoc.send_c_find(
                    query, StudyRootQueryRetrieveInformationModelFind
                ):
                    final = int(status.Status) if status else None
                if final != 0:
                    raise RuntimeError(f"C-FIND ended with status {final}")
                with lock:
                    latencies[kind].append((time.perf_counter() - began) * 1000)
        finally:
            assoc.release()

    refused: list[int] = []
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if refused:
        raise RuntimeError(f"C-FIND: {len(refused)} of {clients} associations were refused")
    return latencies


def store_rate(port: int, count: int) -> float:
    """Instances per second over one association, ``count`` new instances (re-UIDed)."""
    _name, _info, data = scale_fill.templates()[0]
    template = pydicom.dcmread(io.BytesIO(data))
    study, series = scale_fill.uid(), scale_fill.uid()
    payloads = []
    for number in range(count):
        template.StudyInstanceUID, template.SeriesInstanceUID = study, series
        template.SOPInstanceUID = scale_fill.uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = number + 1
        payloads.append(pydicom.dcmread(io.BytesIO(_bytes(template))))
    ae = AE(ae_title="BENCHSTORE")
    ae.add_requested_context(template.SOPClassUID, [str(template.file_meta.TransferSyntaxUID)])
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    if not assoc.is_established:
        raise RuntimeError("the receiver refused the association")
    set_nodelay(assoc)
    began = time.perf_counter()
    try:
        for ds in payloads:
            status = assoc.send_c_store(ds)
            if int(status.get("Status", -1)) != 0:
                raise RuntimeError(f"C-STORE failed: {status}")
    finally:
        assoc.release()
    return count / (time.perf_counter() - began)


def _bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def measure(
    label: str, ports: tuple[int, int], patients: int, args: argparse.Namespace
) -> dict[str, list[float]]:
    http_port, dicom_port = ports
    print(f"{label}: HTTP, {args.clients} clients, {args.requests} requests/kind", flush=True)
    results = http_load(http_port, args.clients, args.requests, 1, patients)
    # the receiver serves 10 associations at once by default: C-FIND uses 8 of them
    associations = min(args.clients, CFIND_ASSOCIATIONS)
    print(f"{label}: C-FIND, {associations} associations", flush=True)
    results.update(cfind_load(dicom_port, associations, args.requests, 2, patients))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--studies", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="requests per kind")
    parser.add_argument("--store", type=int, default=200, help="instances sent by C-STORE")
    args = parser.parse_args(argv)
    if args.instances < args.studies or args.studies < 1:
        parser.error("--instances must be at least --studies, which must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="radiant-bench-scale-"))
    try:
        empty, full = Settings(data_dir=work / "empty"), Settings(data_dir=work / "full")
        scale_fill.prepare_box(empty)
        scale_fill.prepare_box(full)
        per_study = max(1, args.instances // args.studies)
        scale_fill.fill(empty, per_study, 1)  # one study, so that reads have something to read
        began = time.monotonic()
        scale_fill.fill(full, args.instances, args.studies)
        print(
            f"filled: {args.instances} instances in {args.studies} studies "
            f"(direct indexing, shared pixel files) in {time.monotonic() - began:.0f} s; "
            f"baseline: one study of {per_study}",
            flush=True,
        )
        with serve(empty.data_dir, work) as small, serve(full.data_dir, work) as large:
            runs = {
                "empty": measure("baseline", small, 1, args),
                "full": measure("full", large, max(1, args.studies // 2), args),
            }
            rates: dict[str, list[float]] = {"empty": [], "full": []}
            for round_ in range(3):  # alternated, so that both see the same machine load
                for name, ports in (("empty", small), ("full", large)):
                    rates[name].append(store_rate(ports[1], args.store))
                    print(f"C-STORE round {round_ + 1} {name}: {rates[name][-1]:.1f}/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'request (ms)':<24}{'base p50':>10}{'p99':>8}{'full p50':>10}{'p99':>8}"
          f"{'p99 full/base':>16}")  # fmt: skip
    for kind in runs["full"]:
        e, f = runs["empty"][kind], runs["full"][kind]
        ratio = percentile(f, 0.99) / max(percentile(e, 0.99), 1e-9)
        print(
            f"{kind:<24}{percentile(e, 0.5):>10.1f}{percentile(e, 0.99):>8.1f}"
            f"{percentile(f, 0.5):>10.1f}{percentile(f, 0.99):>8.1f}{ratio:>15.2f}x"
            f"   (n={len(f)}, mean {statistics.fmean(f) if f else float('nan'):.1f})"
        )
    empty_rate, full_rate = statistics.median(rates["empty"]), statistics.median(rates["full"])
    print(
        f"\nC-STORE, one association, median of 3 alternated rounds: baseline {empty_rate:.1f}/s, "
        f"full {full_rate:.1f}/s, ratio full/baseline {full_rate / empty_rate:.2f} (target >= 0.90)"
    )
    print(f"target: p99 < {TARGET_P99_MS:.0f} ms for the worklist and search, full index")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
