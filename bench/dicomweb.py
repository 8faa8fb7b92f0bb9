"""DICOMweb benchmark: the appliance's /dicom-web against Orthanc with its DICOMweb plugin.

Both servers get the same series (the LIDC chest CT from ``../shared`` when present, else the
head CT of ``tests/data``), the appliance by STOW-RS, Orthanc by its REST upload. Then, against
each in turn, with one HTTP client keeping its connections: QIDO-RS at the three levels
(requests/s), WADO-RS retrieve of the whole series (MB/s), every frame of the series as stored
(``transfer-syntax=*``, 4 requests in flight as a viewer does: frames/s and MB/s) and the time to
first frame (series metadata, then frame 1 of the first instance): once right after the series
arrived (``first_frame_s``; the box's stable age is set to an hour so its warm-up of a stable
series' metadata cannot run first) and on re-opening it (``reopen_first_frame_s``, median).
Prints the figures and the ratio appliance / Orthanc. A benchmark, not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import orthanc_dicomweb  # noqa: E402
from tests.dicomweb_server import appliance  # noqa: E402

LIDC = ROOT.parent / "shared" / "data" / "dicom" / "ct_chest_lidc_0001"
FALLBACK = ROOT / "tests" / "data" / "ct_ge_head_tilt18_varspacing"
FRAMES_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
STOW_TYPE = 'multipart/related; type="application/dicom"'
DICOM_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def timed(action: Callable[[], int], repeat: int) -> tuple[float, int]:
    """(seconds per call, median, bytes of one call)."""
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def measure(
    name: str,
    base: str,
    headers: dict[str, str],
    study: str,
    series: str,
    sops: list[str],
    repeat: int,
) -> dict[str, float]:
    client = httpx.Client(base_url=base, headers=headers, timeout=300)
    out: dict[str, float] = {}

    def get(url: str, accept: str) -> int:
        answer = client.get(url, headers={"Accept": accept})
        answer.raise_for_status()
        return len(answer.content)

    series_url = f"/studies/{study}/series/{series}"
    for level, url in (
        ("qido_studies", "/studies"),
        ("qido_series", f"/studies/{study}/series"),
        ("qido_instances", f"{series_url}/instances"),
    ):
        seconds, _ = timed(lambda u=url: get(u, "application/dicom+json"), repeat * 10)
        out[f"{level}_req_s"] = 1 / seconds

    def first_frame() -> int:
        size = get(f"{series_url}/metadata", "application/dicom+json")
        return size + get(f"{series_url}/instances/{sops[0]}/frames/1", FRAMES_ACCEPT)

    # the first open after the series arrived, then re-opens (the study opened again)
    out["first_frame_s"], _ = timed(first_frame, 1)
    out["reopen_first_frame_s"], _ = timed(first_frame, repeat * 3)
    seconds, size = timed(lambda: get(series_url, DICOM_ACCEPT), repeat)
    out["retrieve_mb_s"] = size / seconds / 1e6
    out["retrieve_inst_s"] = len(sops) / seconds

    def all_frames() -> int:
        with ThreadPoolExecutor(4) as pool:
            return sum(
                pool.map(
                    lambda sop: get(f"{series_url}/instances/{sop}/frames/1", FRAMES_ACCEPT), sops
                )
            )

    seconds, size = timed(all_frames, repeat)
    out["frames_s"] = len(sops) / seconds
    out["frames_mb_s"] = size / seconds / 1e6
    client.close()
    print(f"{name:9} " + "  ".join(f"{k}={v:.3g}" for k, v in out.items()), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if why := orthanc_dicomweb.missing():
        print(f"cannot run: {why}")
        return 1
    folder = LIDC if LIDC.is_dir() else FALLBACK
    print(f"series: {folder.name}" + ("" if folder == LIDC else f" (LIDC absent at {LIDC})"))
    files = sorted(folder.glob("*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    sops = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    with (
        tempfile.TemporaryDirectory() as tmp,
        appliance(Path(tmp) / "box", RADIANT_STABLE_AGE_S="3600") as box,
        orthanc_dicomweb.orthanc(Path(tmp) / "orthanc") as peer,
    ):
        boundary = "bench-boundary"
        for start in range(0, len(files), 40):
            body = (
                b"".join(
                    f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + f.read_bytes()
                    + b"\r\n"
                    for f in files[start : start + 40]
                )
                + f"--{boundary}--\r\n".encode()
            )
            httpx.post(
                f"{box.dicomweb}/studies",
                content=body,
                timeout=300,
                headers={
                    **box.headers,
                    "Content-Type": f"{STOW_TYPE}; boundary={boundary}",
                },
            ).raise_for_status()
        for f in files:
            httpx.post(
                f"{peer.base}/instances", content=f.read_bytes(), timeout=60
            ).raise_for_status()
        print(f"{len(files)} instances, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
        started = time.perf_counter()
        ours = measure("appliance", box.dicomweb, box.headers, study, series, sops, args.repeat)
        theirs = measure("orthanc", peer.dicomweb, {}, study, series, sops, args.repeat)
        print(f"measured in {time.perf_counter() - started:.0f} s")
    print("ratio appliance/orthanc (higher is better; first frame: lower is better):")
    for key, value in ours.items():
        print(f"  {key:22} {value / theirs[key]:.2f}x")
    print(
        f"frames/s: {ours['frames_s']:.0f} vs {theirs['frames_s']:.0f} "
        f"= {ours['frames_s'] / theirs['frames_s']:.2f}x (target >= 1.5x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
