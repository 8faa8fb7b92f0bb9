"""AI benchmark: time from request to parsed, safety-checked findings with the configured engine.

Two cases, each run ``--repeat`` times after one untimed warm-up:

- CT: 85 slices (MedGemma's maximum) sampled uniformly from the full chest CT
  ``../shared/data/dicom/ct_chest_lidc_0001`` when present, else all 28 slices of the GE head CT
  in ``tests/data`` (the output says which);
- CXR: the chest radiograph ``tests/data/xr_chest_cr_dx``, padded to a square, sent alone
  (instruction, the image, the question: no ``SLICE`` label).

For each it prints: image preparation time, request-to-parsed-findings time (engine + parsing +
safety layer), the engine's own latency, tokens in/out, generated tokens per second and the
peak memory (CUDA peak allocation for the local engine on a GPU; this process's peak RSS
otherwise, which for an HTTP engine does not include the server). A benchmark, not a test: it
asserts nothing about time, and a random or tiny model gives meaningless content.

The engine comes from the settings (``RADIANT_AI_*``, ``.env``) like the appliance's, with
``--engine/--model-dir/--endpoint/--model`` overriding them. Without a configured engine it
says so and exits 0.

Usage: ``.venv/bin/python bench/ai.py [--engine transformers --model-dir DIR | --engine openai
--endpoint URL] [--repeat N] [--max-new-tokens N]`` (``just bench-ai``). ``--random-weights
[--tiny]``: no engine, MedGemma 1.5 4B's shape with random weights on a GPU (time to first
token, decode rate, peak GPU memory; transformers and vLLM), see ``bench/ai_random.py``.

Image preparation is the appliance's own (``ai/imaging.py``; the radiograph read by
``appliance/analysis/radiograph.py``), so "prepare s" is what an analysis job spends on it; the CT
slices are read straight from the folder (sorted along the slice normal) instead of through a
reconstructed volume.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parent.parent
# Run as `python bench/ai.py`, this file's folder comes first on sys.path and this module would
# shadow the `ai` package: take the folder out and put the repository root in.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from ai.engines import (  # noqa: E402
    Engine,
    EngineError,
    EngineRequest,
    EngineResponse,
    EngineUnavailable,
    build_engine,
    engine_parts,
)
from ai.engines.none_engine import not_configured_message  # noqa: E402
from ai.engines.transformers_engine import TransformersEngine  # noqa: E402
from ai.imaging import prepare_ct, prepare_radiograph  # noqa: E402
from ai.parsing import parse_answer  # noqa: E402
from ai.prompts import MAX_VOLUME_IMAGES, PromptRequest, build_primary  # noqa: E402
from ai.safety import apply_safety  # noqa: E402
from appliance import logs  # noqa: E402
from appliance.analysis.radiograph import read_radiograph  # noqa: E402
from appliance.config import ConfigError, Settings, load_settings  # noqa: E402

FULL_CT = ROOT.parent / "shared/data/dicom/ct_chest_lidc_0001"
HEAD_CT = ROOT / "tests/data/ct_ge_head_tilt18_varspacing"
CXR = ROOT / "tests/data/xr_chest_cr_dx/NIH_ChestXray_DX_SC.dcm"
NOT_CONFIGURED = "bench-ai: no AI engine configured"


@dataclass
class Case:
    """One benchmark input: its prompt and images."""

    name: str
    source: str
    prompt: PromptRequest
    images: list[bytes]
    prepare_s: float


@dataclass
class Result:
    """The timed runs of one case."""

    case: Case
    total_s: list[float] = field(default_factory=list)
    responses: list[EngineResponse] = field(default_factory=list)
    findings: int = 0
    needs_review: bool = False
    peak_memory: str = "n/a"


# --------------------------------------------------------------------------------------------
# inputs


def _along_normal(ds: pydicom.Dataset) -> float:
    """Position of a slice along its normal (mm), for sorting; Instance Number without IPP."""
    iop, ipp = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
    if iop is None or ipp is None:
        return float(ds.get("InstanceNumber") or 0)
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return float(np.dot(normal, np.asarray(ipp, float)))


def ct_images(folder: Path) -> list[bytes]:
    """The appliance's CT preparation (``ai.imaging.prepare_ct``: at most 85 slices sampled
    uniformly, three HU windows as RGB, JPEG) on the folder's slices sorted along the normal."""
    datasets = sorted(
        (pydicom.dcmread(path) for path in folder.iterdir() if path.suffix.lower() == ".dcm"),
        key=_along_normal,
    )
    hu = np.stack(
        [
            ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1.0))
            + float(getattr(ds, "RescaleIntercept", 0.0))
            for ds in datasets
        ]
    )
    return [image.data for image in prepare_ct(hu).images]


def cxr_image(path: Path) -> bytes:
    """The appliance's radiograph path: ``appliance.analysis.radiograph.read_radiograph`` (grey
    levels, MONOCHROME1) then ``ai.imaging.prepare_radiograph`` (padded square, 896 px, JPEG)."""
    radiograph = read_radiograph(path)
    return (
        prepare_radiograph(radiograph.pixels, monochrome1=radiograph.inverted_here).images[0].data
    )


def build_cases(ct_folder: Path | None) -> list[Case]:
    folder = ct_folder or (FULL_CT if FULL_CT.is_dir() else HEAD_CT)
    started = time.perf_counter()
    slices = ct_images(folder)
    ct_seconds = time.perf_counter() - started
    note = "" if len(slices) == MAX_VOLUME_IMAGES else f" (only {len(slices)} slices available)"
    started = time.perf_counter()
    radiograph = cxr_image(CXR)
    cxr_seconds = time.perf_counter() - started
    return [
        Case(
            name=f"CT {len(slices)} slices",
            source=f"{folder.name}{note}",
            prompt=build_primary(modality="CT", image_count=len(slices), body_part="chest"),
            images=slices,
            prepare_s=ct_seconds,
        ),
        Case(
            name="CXR 1 image",
            source=CXR.parent.name,
            prompt=build_primary(modality="DX", image_count=1, body_part="chest"),
            images=[radiograph],
            prepare_s=cxr_seconds,
        ),
    ]


# --------------------------------------------------------------------------------------------
# measuring


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cuda(engine: Engine) -> Any | None:
    """torch when the engine is the local one on a GPU (for its peak-memory counters)."""
    if isinstance(engine, TransformersEngine) and engine.describe().get("device") == "cuda":
        import torch

        return torch
    return None


def run_case(engine: Engine, case: Case, repeat: int, max_new_tokens: int) -> Result:
    request = EngineRequest(
        parts=engine_parts(case.prompt, case.images),
        max_new_tokens=max_new_tokens,
        request_id=f"bench-{case.name}",
    )
    result = Result(case)
    engine.generate(request)  # warm-up (caches, CUDA kernels), not timed
    torch = _cuda(engine)
    if torch is not None:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeat):
        started = time.perf_counter()
        response = engine.generate(request)
        parsed = parse_answer(
            response.text, expect=case.prompt.expect, slice_count=case.prompt.image_count
        )
        safe = apply_safety(parsed)
        result.total_s.append(time.perf_counter() - started)
        result.responses.append(response)
        result.findings = len(safe.findings)
        result.needs_review = safe.needs_review
    if torch is not None:
        result.peak_memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (CUDA)"
    else:
        where = "this process" if isinstance(engine, TransformersEngine) else "client only"
        result.peak_memory = f"{_peak_rss_mib():.0f} MiB RSS ({where})"
    return result


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report(results: list[Result], engine: Engine, load_s: float | None) -> None:
    info = engine.describe()
    print(f"engine: {', '.join(f'{k}={v}' for k, v in info.items() if v is not None)}")
    print(f"python {platform.python_version()} on {platform.machine()}")
    if load_s is not None:
        print(f"model load: {load_s:.1f} s (once, before the cases)")
    header = (
        f"{'case':<16} {'prepare s':>9} {'total s':>8} {'engine s':>8} {'tok in':>7} "
        f"{'tok out':>7} {'tok/s':>7} {'findings':>8}  peak memory"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        response = result.responses[-1]
        engine_s = statistics.median(r.latency_ms for r in result.responses) / 1000.0
        out = response.tokens_out
        rate = out / engine_s if out is not None and engine_s > 0 else None
        print(
            f"{result.case.name:<16} {result.case.prepare_s:>9.2f} "
            f"{statistics.median(result.total_s):>8.2f} {engine_s:>8.2f} "
            f"{response.tokens_in if response.tokens_in is not None else 'n/a':>7} "
            f"{out if out is not None else 'n/a':>7} {_fmt(rate):>7} "
            f"{result.findings:>8}  {result.peak_memory}"
        )
        print(
            f"{'':<16} source: {result.case.source}; route {response.route}; "
            f"finish {response.finish_reason}; needs review {result.needs_review}"
        )
    print("median of the timed repeats; total = request to parsed, safety-checked findings")


# --------------------------------------------------------------------------------------------
# entry point


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["transformers", "openai", "none"])
    parser.add_argument("--model-dir", type=Path, help="local checkpoint (RADIANT_AI_MODEL_DIR)")
    parser.add_argument("--endpoint", help="OpenAI-compatible base URL (RADIANT_AI_ENDPOINT)")
    parser.add_argument("--model", help="model name sent to the server (RADIANT_AI_MODEL)")
    parser.add_argument("--ct", type=Path, help="a CT series folder instead of the default")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="no engine: MedGemma 1.5 4B's shape with random bf16 weights on CUDA "
        "(transformers, and vLLM when installed); exits 0 without a GPU",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="with --random-weights: a tiny configuration (runs on CPU; checks the mechanics)",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(
        ai_engine=args.engine,
        ai_model_dir=args.model_dir,
        ai_endpoint=args.endpoint,
        ai_model=args.model,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.random_weights:
        from bench import ai_random

        logs.configure("warning")
        tokens = min(args.max_new_tokens, 8 if args.tiny else 256)
        return ai_random.run(lambda: build_cases(args.ct), tiny=args.tiny, new_tokens=tokens)
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"bench-ai: {exc}", file=sys.stderr)
        return 2
    logs.configure("warning")  # JSON lines on stderr; stdout keeps only the report
    engine = build_engine(settings)
    if engine.name == "none":
        print(f"{NOT_CONFIGURED}: nothing to measure.")
        print(not_configured_message(settings.ai_model_path))
        return 0
    try:
        load_s: float | None = None
        if isinstance(engine, TransformersEngine):
            started = time.perf_counter()
            engine.load()
            load_s = time.perf_counter() - started
        cases = build_cases(args.ct)
        repeat = max(1, args.repeat)
        results = [run_case(engine, case, repeat, args.max_new_tokens) for case in cases]
        report(results, engine, load_s)
    except EngineUnavailable as exc:
        print(f"bench-ai: the configured engine is not usable: {exc}")
        return 0
    except EngineError as exc:
        print(f"bench-ai: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
