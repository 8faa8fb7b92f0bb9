"""Local MedGemma through Hugging Face ``transformers`` (>= 5) on a checkpoint directory.

What Google's MedGemma notebooks do, and this engine does the same:

- ``AutoProcessor`` + ``AutoModelForImageTextToText`` from a local directory (never the hub),
  ``dtype=torch.bfloat16`` (fp16 overflows), ``attn_implementation="sdpa"``.
- The chat template is applied by the processor: one user turn whose content lists text and
  images in the request's order (a system turn first when given). Gemma 3's template trims
  each text part, so consecutive text parts are joined first (``joined_parts``); the rendered
  prompt reads ``...<end_of_image>\n\nSLICE 3\n\nBased on the visual evidence...``.
- The processor's ``token_type_ids`` (image tokens = 1) go to ``generate``: Gemma 3 needs them
  for the bidirectional attention over each image's tokens.
- Greedy decoding (``do_sample=False``), whatever the checkpoint's generation_config says.
- The answer is decoded WITH the thinking markers ``<unused94>``/``<unused95>`` kept, because
  ``ai.parsing`` cuts the trace at ``<unused95>``. Whether those tokens are flagged "special"
  depends on the tokenizer file, and ``skip_special_tokens=True`` would drop them with the other
  control tokens; so other special tokens are removed by id here and the rest is decoded with
  ``skip_special_tokens=False``.

A GPTQ checkpoint (``quantization_config.quant_method == "gptq"`` in ``config.json``) loads
through transformers' GPTQ integration, which needs the GPTQModel backend and optimum
(``pip install gptqmodel optimum``). AutoGPTQ is archived and transformers 5 removed it.

The model is loaded once, lazily (first request or :meth:`TransformersEngine.load`), under a
lock; generation runs one request at a time (a single worker owns the model). torch and
transformers are imported only then, so the appliance runs without the ``local-ai`` extra.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ai.engines.base import (
    EngineError,
    EngineLimitError,
    EngineName,
    EngineRequest,
    EngineResponse,
    EngineUnavailable,
)
from ai.engines.transformers_prompt import chat_messages, tokenized

log = structlog.get_logger("radiant.ai.transformers")

__all__ = [
    "DEFAULT_MODEL_DIR_NAME",
    "GEMMA3_MODEL_TYPE",
    "CheckpointInfo",
    "TransformersEngine",
    "chat_messages",
    "checkpoint_revision",
    "inspect_checkpoint",
]

#: Default checkpoint folder name under ``<data_dir>/models``.
DEFAULT_MODEL_DIR_NAME = "medgemma-1.5-4b-it"
#: ``config.json`` ``model_type`` of Gemma 3 (and so MedGemma 4B) checkpoints.
GEMMA3_MODEL_TYPE = "gemma3"
#: MedGemma's thinking trace markers, kept in the decoded text.
THINKING_TOKENS = ("<unused94>", "<unused95>")
INSTALL_HINT = "pip install 'radiantai[local-ai]' (transformers>=5 and torch)"
GPTQ_HINT = (
    "pip install gptqmodel optimum (the GPTQModel backend of transformers' GPTQ integration; "
    "AutoGPTQ is archived and not supported by transformers 5)"
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_SNAPSHOT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """What ``config.json`` says about a checkpoint directory."""

    path: Path
    model_type: str
    quant_method: str | None
    revision: str


def _module_available(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def _require(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise EngineUnavailable(
            f"the transformers engine needs the Python package {name!r}, which is not "
            f"installed ({exc}); install it with {INSTALL_HINT}"
        ) from None


def checkpoint_revision(path: Path) -> str:
    """A revision for the audit trail: the hub snapshot hash when the directory is a hub
    snapshot, else ``sha256:`` of config.json plus the names and sizes of the weight files."""
    if path.parent.name == "snapshots" and _SNAPSHOT.match(path.name):
        return path.name
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for item in sorted(path.iterdir()):
        if item.is_file() and item.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(f"\0{item.name}\0{item.stat().st_size}".encode())
    return "sha256:" + digest.hexdigest()[:16]


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Check that ``path`` holds a Gemma 3 / MedGemma checkpoint this engine can load.

    Raises :class:`EngineUnavailable` saying what is wrong and what to do.
    """
    if not path.is_dir():
        raise EngineUnavailable(
            f"no MedGemma checkpoint directory at {path}: copy the google/medgemma-1.5-4b-it "
            "checkpoint (config.json, *.safetensors, tokenizer and processor files) there, or "
            "point RADIANT_AI_MODEL_DIR at it"
        )
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineUnavailable(
            f"{path} has no config.json: it is not a transformers checkpoint directory"
        ) from None
    except (OSError, ValueError) as exc:
        raise EngineUnavailable(f"{config_path} cannot be read as JSON: {exc}") from None
    if not isinstance(config, dict):
        raise EngineUnavailable(f"{config_path} is not a JSON object")
    model_type = str(config.get("model_type", ""))
    if model_type != GEMMA3_MODEL_TYPE:
        raise EngineUnavailable(
            f"{path} holds a {model_type or 'untyped'!r} checkpoint, not Gemma 3 / MedGemma: "
            f"config.json model_type must be {GEMMA3_MODEL_TYPE!r} "
            "(use google/medgemma-1.5-4b-it or a GPTQ quantization of it)"
        )
    quantization = config.get("quantization_config")
    quant_method: str | None = None
    if isinstance(quantization, dict):
        quant_method = str(quantization.get("quant_method", "")).lower() or None
    if quant_method == "gptq":
        missing = [name for name in ("gptqmodel", "optimum") if not _module_available(name)]
        if missing:
            raise EngineUnavailable(
                f"{path} is a GPTQ-quantized checkpoint and {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed: {GPTQ_HINT}"
            )
    elif quant_method is not None:
        raise EngineUnavailable(
            f"{path} is quantized with {quant_method!r}; this engine loads bf16 or GPTQ "
            "checkpoints only"
        )
    return CheckpointInfo(
        path=path,
        model_type=model_type,
        quant_method=quant_method,
        revision=checkpoint_revision(path),
    )


@dataclass(slots=True)
class _Loaded:
    processor: Any
    model: Any
    torch: Any
    device: str
    info: CheckpointInfo
    drop_ids: frozenset[int]
    eos_ids: frozenset[int]
    max_positions: int | None


class TransformersEngine:
    """MedGemma from a local checkpoint directory, loaded once on first use."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self.load_count = 0

    @property
    def name(self) -> EngineName:
        return "transformers"

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def describe(self) -> dict[str, str | bool | None]:
        loaded = self._loaded
        return {
            "engine": "transformers",
            "configured": True,
            "model_dir": str(self.model_dir),
            "loaded": loaded is not None,
            "device": loaded.device if loaded else None,
            "revision": loaded.info.revision if loaded else None,
            "quantization": loaded.info.quant_method if loaded else None,
        }

    def load(self) -> None:
        """Load processor and model now (idempotent, thread-safe)."""
        self._ensure_loaded()

    def _ensure_loaded(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()
                self.load_count += 1
            return self._loaded

    def _load(self) -> _Loaded:
        info = inspect_checkpoint(self.model_dir)
        torch = _require("torch")
        transformers = _require("transformers")
        transformers.utils.logging.disable_progress_bar()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        log.info(
            "ai.transformers.loading",
            model_dir=str(info.path),
            device=device,
            quantization=info.quant_method,
            revision=info.revision,
        )
        started = time.perf_counter()
        kwargs: dict[str, Any] = {
            "dtype": torch.bfloat16,
            "attn_implementation": "sdpa",
            "local_files_only": True,
        }
        with_device_map = _module_available("accelerate")
        if with_device_map:
            kwargs["device_map"] = device
        try:
            processor = transformers.AutoProcessor.from_pretrained(
                str(info.path), local_files_only=True
            )
            model = transformers.AutoModelForImageTextToText.from_pretrained(
                str(info.path), **kwargs
            )
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
            raise EngineUnavailable(
                f"the checkpoint in {info.path} could not be loaded: {exc}"
            ) from None
        if not with_device_map:
            model = model.to(device)
        model.eval()
        tokenizer = processor.tokenizer
        keep = {
            token_id
            for token_id in tokenizer.convert_tokens_to_ids(list(THINKING_TOKENS))
            if token_id is not None and token_id != tokenizer.unk_token_id
        }
        special = set(tokenizer.all_special_ids)
        special.update(
            token_id
            for token_id, token in tokenizer.added_tokens_decoder.items()
            if getattr(token, "special", False)
        )
        eos = model.generation_config.eos_token_id
        eos_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
        text_config = getattr(model.config, "text_config", model.config)
        max_positions = getattr(text_config, "max_position_embeddings", None)
        log.info(
            "ai.transformers.loaded",
            device=device,
            dtype=str(model.dtype),
            attention=model.config._attn_implementation,
            seconds=round(time.perf_counter() - started, 2),
        )
        return _Loaded(
            processor=processor,
            model=model,
            torch=torch,
            device=device,
            info=info,
            drop_ids=frozenset(special - keep),
            eos_ids=eos_ids,
            max_positions=int(max_positions) if max_positions else None,
        )

    def generate(self, request: EngineRequest) -> EngineResponse:
        loaded = self._ensure_loaded()
        with self._generate_lock:
            return self._generate(loaded, request)

    def prompt_text(self, request: EngineRequest) -> str:
        """The prompt exactly as the model receives it (the processor's token ids decoded,
        control and image tokens included), for inspection; loads the checkpoint if needed."""
        loaded = self._ensure_loaded()
        inputs = tokenized(loaded.processor, request)
        decoded: str = loaded.processor.tokenizer.decode(
            inputs["input_ids"][0], skip_special_tokens=False
        )
        return decoded

    def _generate(self, loaded: _Loaded, request: EngineRequest) -> EngineResponse:
        torch = loaded.torch
        started = time.perf_counter()
        inputs = tokenized(loaded.processor, request)
        inputs = inputs.to(loaded.model.device, dtype=torch.bfloat16)
        tokens_in = int(inputs["input_ids"].shape[-1])
        if loaded.max_positions and tokens_in + request.max_new_tokens > loaded.max_positions:
            raise EngineLimitError(
                f"the prompt has {tokens_in} tokens; with {request.max_new_tokens} new tokens it "
                f"exceeds the model's context of {loaded.max_positions} tokens: send fewer images"
            )
        # Greedy, whatever the checkpoint's sampling defaults (MedGemma ships top_k/top_p).
        # generate() refills None values from the checkpoint, so the sampling knobs are set to
        # transformers' neutral defaults; with do_sample=False they are not used.
        config = copy.deepcopy(loaded.model.generation_config)
        config.top_k = 50
        config.top_p = 1.0
        config.temperature = 1.0
        config.do_sample = False
        config.max_new_tokens = request.max_new_tokens
        try:
            with torch.inference_mode():
                output = loaded.model.generate(**inputs, generation_config=config)
        except torch.cuda.OutOfMemoryError:
            raise EngineLimitError(
                f"out of GPU memory for {request.image_count} images ({tokens_in} tokens): "
                "send fewer images"
            ) from None
        except RuntimeError as exc:
            raise EngineError(f"generation failed: {exc}") from None
        generated = [int(token) for token in output[0, tokens_in:].tolist()]
        finish = "stop" if generated and generated[-1] in loaded.eos_ids else "length"
        kept = [token for token in generated if token not in loaded.drop_ids]
        text = loaded.processor.tokenizer.decode(kept, skip_special_tokens=False)
        latency_ms = (time.perf_counter() - started) * 1000.0
        log.info(
            "ai.transformers.generated",
            request_id=request.request_id,
            images=request.image_count,
            tokens_in=tokens_in,
            tokens_out=len(generated),
            latency_ms=round(latency_ms, 1),
            finish_reason=finish,
        )
        return EngineResponse(
            text=text,
            model_id=loaded.info.path.name,
            model_revision=loaded.info.revision,
            engine="transformers",
            route="local",
            tokens_in=tokens_in,
            tokens_out=len(generated),
            latency_ms=latency_ms,
            finish_reason=finish,
        )

    def close(self) -> None:
        """Drop the model (the next request loads it again)."""
        with self._load_lock, self._generate_lock:
            loaded, self._loaded = self._loaded, None
            if loaded is not None and loaded.device == "cuda":
                del loaded
                torch = importlib.import_module("torch")
                torch.cuda.empty_cache()
