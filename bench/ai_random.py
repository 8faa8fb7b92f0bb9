"""``bench/ai.py --random-weights``: MedGemma 1.5 4B's shape with random weights, on a GPU.

No weights can be downloaded, and speed does not depend on what the weights say: this builds a
``Gemma3ForConditionalGeneration`` with MedGemma 1.5 4B's published configuration (Gemma 3
4B: text 34 layers, hidden 2560, MLP 10240, 8 heads / 4 KV heads of 256, vocabulary 262,208,
sliding window 1024 on five layers of six; SigLIP vision tower 896 px, patch 14, 27 layers,
hidden 1152; 256 tokens per image) and random bf16 weights, with the offline Gemma 3
tokenizer of ``tests/ai_checkpoint.py``. The prompts are the appliance's own (85 CT slices,
about 22,000 tokens; one chest radiograph), prepared as for a real analysis.

Measured per case, on CUDA: time to first token (prefill, vision tower included), decode
tokens per second (``max_new_tokens`` forced, no early stop), and peak GPU memory; with
transformers (SDPA attention) and, when ``vllm`` imports, with vLLM's engine on the same random
checkpoint saved to a temp dir. Without a GPU it says so and exits 0. ``--tiny`` runs the same
code on a tiny configuration (CPU is fine): it checks the mechanics, its figures mean nothing.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NEEDS_GPU = "bench-ai --random-weights: needs a CUDA GPU (none here); nothing measured"
TINY_IMAGE, TINY_PATCH, TINY_TOKENS = 32, 8, 4


@dataclass
class Figures:
    """One case with one engine."""

    engine: str
    case: str
    tokens_in: int
    ttft_s: float
    tokens_per_s: float
    new_tokens: int
    peak_gib: float | None


def build(tiny: bool, device: str) -> tuple[Any, Any]:
    """(model, processor): random bf16 weights, MedGemma 1.5 4B's shape unless ``tiny``."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
        GenerationConfig,
        SiglipVisionConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from tests.ai_checkpoint import GEMMA3_CHAT_TEMPLATE, offline_tokenizer

    tokenizer = offline_tokenizer()
    image, patch, tokens = (TINY_IMAGE, TINY_PATCH, TINY_TOKENS) if tiny else (896, 14, 256)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": image, "width": image}),
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=tokens,
    )
    if tiny:
        text: dict[str, Any] = {
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 32, "max_position_embeddings": 8192, "sliding_window": 128,
            "layer_types": ["sliding_attention", "full_attention"],
        }  # fmt: skip
        vision: dict[str, Any] = {
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2,
        }  # fmt: skip
    else:
        text = {
            "vocab_size": 262_208, "hidden_size": 2560, "intermediate_size": 10_240,
            "num_hidden_layers": 34, "num_attention_heads": 8, "num_key_value_heads": 4,
            "head_dim": 256, "query_pre_attn_scalar": 256, "max_position_embeddings": 131_072,
            "sliding_window": 1024, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0},
            "layer_types": [
                "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(34)
            ],
        }  # fmt: skip
        vision = {
            "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
            "num_attention_heads": 16, "vision_use_head": False,
        }  # fmt: skip
    config = Gemma3Config(
        text_config=Gemma3TextConfig(**text, pad_token_id=0, eos_token_id=1, bos_token_id=2),
        vision_config=SiglipVisionConfig(**vision, image_size=image, patch_size=patch),
        mm_tokens_per_image=tokens,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
        attn_implementation="sdpa",  # what the appliance's engine asks for
    )
    torch.manual_seed(20)
    with torch.device(device):
        model = Gemma3ForConditionalGeneration(config)
    model = model.to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(
        do_sample=False, bos_token_id=2, pad_token_id=0, eos_token_id=1
    )
    return model, processor


def prompt_inputs(processor: Any, case: Any, device: str) -> Any:
    """The processor's tensors for a bench case, as the appliance's engine builds them."""
    from ai.engines import EngineRequest, engine_parts
    from ai.engines.transformers_engine import chat_messages

    request = EngineRequest(parts=engine_parts(case.prompt, case.images), max_new_tokens=1)
    inputs = processor.apply_chat_template(
        chat_messages(request),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    return inputs.to(device)


def _timed(run: Callable[[], Any], device: str) -> float:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began


def measure_transformers(
    model: Any, processor: Any, cases: list[Any], new_tokens: int, device: str
) -> list[Figures]:
    """TTFT = a one-token generate; decode rate from an ``new_tokens`` generate minus it."""
    import torch

    figures = []
    for case in cases:
        inputs = prompt_inputs(processor, case, device)
        length = int(inputs["input_ids"].shape[-1])

        def generate(n: int, given: Any = inputs) -> Any:
            with torch.inference_mode():
                return model.generate(**given, max_new_tokens=n, min_new_tokens=n)

        generate(2)  # warm-up (kernels, allocator)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        first = _timed(lambda: generate(1), device)
        whole = _timed(lambda: generate(new_tokens), device)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        rate = (new_tokens - 1) / max(whole - first, 1e-9)
        figures.append(
            Figures("transformers (SDPA)", case.name, length, first, rate, new_tokens, peak)
        )
    return figures


def measure_vllm(model: Any, processor: Any, cases: list[Any], new_tokens: int) -> list[Figures]:
    """The same random checkpoint through vLLM's engine (saved to a temp dir first)."""
    import torch
    from PIL import Image
    from vllm import LLM, SamplingParams

    from ai.engines import EngineRequest, engine_parts
    from ai.engines.transformers_engine import chat_messages

    folder = Path(tempfile.mkdtemp(prefix="radiant-random-medgemma-"))
    try:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        torch.cuda.empty_cache()
        most = max(len(case.images) for case in cases)
        llm = LLM(
            model=str(folder),
            dtype="bfloat16",
            max_model_len=32_768,
            limit_mm_per_prompt={"image": most},
            gpu_memory_utilization=0.85,
        )
        figures = []
        for case in cases:
            request = EngineRequest(parts=engine_parts(case.prompt, case.images), max_new_tokens=1)
            messages = chat_messages(request)
            text = processor.apply_chat_template(messages, add_generation_prompt=True)
            images: list[Image.Image] = [
                item["image"] for m in messages for item in m["content"] if item["type"] == "image"
            ]
            prompt = {"prompt": text, "multi_modal_data": {"image": images}}

            def run(n: int, given: Any = prompt) -> Any:
                params = SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0)
                return llm.generate([given], params, use_tqdm=False)

            run(2)
            torch.cuda.reset_peak_memory_stats()
            first = _timed(lambda: run(1), "cuda")
            whole = _timed(lambda: run(new_tokens), "cuda")
            length = len(run(1)[0].prompt_token_ids)
            rate = (new_tokens - 1) / max(whole - first, 1e-9)
            figures.append(Figures("vLLM", case.name, length, first, rate, new_tokens, None))
        return figures
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(make_cases: Callable[[], list[Any]], *, tiny: bool, new_tokens: int) -> int:
    """Build, measure and print; 0 (also when there is no GPU and not ``tiny``)."""
    if (
        importlib.util.find_spec("torch") is None
        or importlib.util.find_spec("transformers") is None
    ):
        print("bench-ai --random-weights: torch and transformers are not installed")
        return 0
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cuda" and not tiny:
        print(NEEDS_GPU)
        return 0
    cases = make_cases()
    began = time.perf_counter()
    model, processor = build(tiny, device)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"random {'tiny' if tiny else 'MedGemma 1.5 4B-shaped'} Gemma 3: {params / 1e9:.2f} B "
        f"parameters, bf16, on {device}, built in {time.perf_counter() - began:.1f} s"
    )
    figures = measure_transformers(model, processor, cases, new_tokens, device)
    if device == "cuda" and importlib.util.find_spec("vllm") is not None:
        figures += measure_vllm(model, processor, cases, new_tokens)
    elif device == "cuda":
        print("vLLM: not installed (pip install vllm), not measured")
    header = (
        f"{'engine':<20} {'case':<16} {'tok in':>7} {'TTFT s':>7} {'tok/s':>7} {'new':>5}  peak GPU"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        peak = "n/a" if f.peak_gib is None else f"{f.peak_gib:.2f} GiB"
        print(
            f"{f.engine:<20} {f.case:<16} {f.tokens_in:>7} {f.ttft_s:>7.2f} "
            f"{f.tokens_per_s:>7.1f} {f.new_tokens:>5}  {peak}"
        )
    if tiny:
        print("tiny configuration: checks the mechanics only; the figures mean nothing")
    return 0
