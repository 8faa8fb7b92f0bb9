"""The transformers engine, end to end on CPU, on a tiny random MedGemma-shaped checkpoint.

No weights can be downloaded here, so the test builds a real ``Gemma3ForConditionalGeneration``
(tiny Gemma 3 text model + tiny SigLIP vision tower + the multimodal projector, random weights),
an offline Gemma tokenizer with Gemma 3's control tokens, a Gemma 3 processor and chat template,
saves them as a checkpoint directory, and runs the real engine on 4 slices of a real CT series.
The model says nothing meaningful: the test checks the mechanics (bf16, SDPA, token_type_ids,
greedy decoding, one load, token counts, the thinking markers), never the content.

Tiny configuration (the Gemma 3 processor and projector need
``(image_size / patch_size) % sqrt(mm_tokens_per_image) == 0`` and
``image_seq_length == mm_tokens_per_image``):

- vision: SigLIP, image 32 px, patch 8 (4 x 4 patches), hidden 32, 1 layer, 2 heads;
- projector: 4 tokens per image (2 x 2 average pool of the 4 x 4 patches);
- text: hidden 64, 2 layers (one sliding-window, one full attention), 2 heads, 1 KV head,
  head_dim 32, vocabulary of the test tokenizer (~370 tokens), 8192 positions.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3Processor,
    Gemma3TextConfig,
    GenerationConfig,
    SiglipVisionConfig,
)
from transformers.models.gemma3.image_processing_pil_gemma3 import (  # noqa: E402
    Gemma3ImageProcessorPil,
)

from ai.engines import (  # noqa: E402
    EngineError,
    EngineLimitError,
    EngineRequest,
    EngineUnavailable,
    ImagePart,
    TextPart,
    engine_parts,
    transformers_engine,
)
from ai.engines.transformers_engine import TransformersEngine, inspect_checkpoint  # noqa: E402
from ai.parsing import parse_answer  # noqa: E402
from ai.prompts import build_comparison, build_primary  # noqa: E402
from tests.ai_checkpoint import GEMMA3_CHAT_TEMPLATE, offline_tokenizer  # noqa: E402
from tests.ai_server import ct_slice_jpegs  # noqa: E402

pytestmark = pytest.mark.integration

IMAGE_SIZE = 32
PATCH_SIZE = 8
TOKENS_PER_IMAGE = 4
SLICES = 4
MAX_NEW_TOKENS = 12


def build_tiny_checkpoint(directory: Path) -> dict[str, Any]:
    """Save a tiny random MedGemma-shaped checkpoint (model, processor, template) there."""
    tokenizer = offline_tokenizer()
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=TOKENS_PER_IMAGE,
    )
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    text_config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=8192,
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    config = Gemma3Config(
        text_config=text_config,
        vision_config=vision_config,
        mm_tokens_per_image=TOKENS_PER_IMAGE,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    torch.manual_seed(1234)
    model = Gemma3ForConditionalGeneration(config).to(torch.bfloat16)
    # MedGemma ships sampling defaults; the engine must override them with greedy decoding.
    model.generation_config = GenerationConfig(
        bos_token_id=2,
        pad_token_id=0,
        eos_token_id=[1, end_of_turn],
        do_sample=True,
        top_k=64,
        top_p=0.95,
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return {"vocab_size": len(tokenizer), "end_of_turn": end_of_turn}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models") / "medgemma-tiny"
    build_tiny_checkpoint(directory)
    return directory


@pytest.fixture(scope="module")
def ct_request() -> EngineRequest:
    images = ct_slice_jpegs(count=SLICES)
    prompt = build_primary(modality="CT", image_count=SLICES, body_part="head")
    return EngineRequest(
        system="You are an expert radiologist.",
        parts=engine_parts(prompt, images),
        max_new_tokens=MAX_NEW_TOKENS,
    )


class Spy:
    """Records the keyword arguments of every call of a patched class method."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Spy]]:
    """Spy on from_pretrained (loading), generate and forward (what reaches the model)."""
    recorded = {"from_pretrained": Spy(), "generate": Spy(), "forward": Spy()}
    auto_model = transformers.AutoModelForImageTextToText
    original_load = auto_model.from_pretrained.__func__
    original_generate = Gemma3ForConditionalGeneration.generate
    original_forward = Gemma3ForConditionalGeneration.forward

    @functools.wraps(original_load)
    def from_pretrained(cls: Any, *args: Any, **kwargs: Any) -> Any:
        recorded["from_pretrained"].calls.append(kwargs)
        return original_load(cls, *args, **kwargs)

    @functools.wraps(original_generate)
    def generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorded["generate"].calls.append(kwargs)
        return original_generate(self, *args, **kwargs)

    @functools.wraps(original_forward)  # generate() validates kwargs against the signature
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorded["forward"].calls.append(kwargs)
        return original_forward(self, *args, **kwargs)

    monkeypatch.setattr(auto_model, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(Gemma3ForConditionalGeneration, "generate", generate)
    monkeypatch.setattr(Gemma3ForConditionalGeneration, "forward", forward)
    yield recorded


def test_generates_on_cpu_in_bf16_with_sdpa_token_type_ids_and_greedy_decoding(
    checkpoint: Path, ct_request: EngineRequest, spies: dict[str, Spy]
) -> None:
    engine = TransformersEngine(checkpoint)
    assert not engine.loaded  # lazy: nothing happens before the first request

    first = engine.generate(ct_request)
    second = engine.generate(ct_request)

    # Loaded once, bf16, SDPA, from the local directory only.
    assert engine.load_count == 1
    (load_kwargs,) = spies["from_pretrained"].calls
    assert load_kwargs["dtype"] is torch.bfloat16
    assert load_kwargs["attn_implementation"] == "sdpa"
    assert load_kwargs["local_files_only"] is True
    model = engine._loaded.model if engine._loaded else None
    assert model is not None
    assert model.dtype is torch.bfloat16
    assert model.config._attn_implementation == "sdpa"
    assert engine.describe()["device"] == "cpu"

    # What generate received: the processor's token_type_ids, bf16 pixels, greedy decoding.
    assert len(spies["generate"].calls) == 2
    call = spies["generate"].calls[0]
    token_type_ids = call["token_type_ids"]
    input_ids = call["input_ids"]
    assert token_type_ids.shape == input_ids.shape
    image_token = engine._loaded.processor.tokenizer.image_token_id if engine._loaded else -1
    assert int(token_type_ids.sum()) == SLICES * TOKENS_PER_IMAGE
    assert torch.equal(token_type_ids.bool(), input_ids == image_token)
    assert call["pixel_values"].shape == (SLICES, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert call["pixel_values"].dtype is torch.bfloat16
    generation = call["generation_config"]
    assert generation.do_sample is False
    assert generation.max_new_tokens == MAX_NEW_TOKENS
    # The prefill forward pass got them too (Gemma 3's bidirectional attention over images).
    prefill = spies["forward"].calls[0]
    assert prefill["token_type_ids"] is not None
    assert prefill["mm_encoder_outputs"] is not None  # the 4 images, encoded before prefill

    # The chat template put one user turn in the prompt's order: system text, instruction,
    # each image followed by SLICE n, the question last.
    prompt = engine._loaded.processor.tokenizer.decode(input_ids[0]) if engine._loaded else ""
    assert prompt.startswith("<bos><start_of_turn>user\nYou are an expert radiologist.\n\n")
    order = [prompt.index("You are assisting a radiologist")]
    for n in range(1, SLICES + 1):
        image_at = prompt.index("<start_of_image>", order[-1])
        order += [image_at, prompt.index(f"SLICE {n}", image_at)]
    order.append(prompt.index("Based on the visual evidence"))
    assert order == sorted(order)
    assert prompt.endswith("<end_of_turn>\n<start_of_turn>model\n")

    # Greedy: the same answer twice; counts and metadata reported.
    assert first.text == second.text
    assert first.tokens_in == second.tokens_in == int(input_ids.shape[-1])
    assert first.tokens_out is not None and 1 <= first.tokens_out <= MAX_NEW_TOKENS
    assert first.finish_reason in ("stop", "length")
    assert first.engine == "transformers"
    assert first.route == "local"
    assert first.model_id == "medgemma-tiny"
    assert first.model_revision is not None and first.model_revision.startswith("sha256:")
    assert first.latency_ms > 0


def test_thinking_markers_survive_decoding(checkpoint: Path) -> None:
    engine = TransformersEngine(checkpoint)
    engine.load()
    loaded = engine._loaded
    assert loaded is not None
    tokenizer = loaded.processor.tokenizer
    answer = '<unused94>thought\nlooks normal<unused95>```json\n{"findings": []}\n```'
    ids = [*tokenizer.encode(answer, add_special_tokens=False)]
    ids.append(tokenizer.convert_tokens_to_ids("<end_of_turn>"))

    # What the engine decodes: other control tokens removed by id, the markers kept.
    kept = [token for token in ids if token not in loaded.drop_ids]
    text = tokenizer.decode(kept, skip_special_tokens=False)
    assert text == answer
    # Why: with these tokens flagged special, skip_special_tokens=True deletes the markers.
    assert "<unused95>" not in tokenizer.decode(ids, skip_special_tokens=True)
    parsed = parse_answer(text)
    assert parsed.thinking_stripped
    assert parsed.answer_text.startswith("```json")


def test_concurrent_first_requests_load_once(checkpoint: Path) -> None:
    engine = TransformersEngine(checkpoint)
    barrier = threading.Barrier(3)

    def load() -> None:
        barrier.wait()
        engine.load()

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert engine.load_count == 1
    assert engine.loaded


def test_prompt_longer_than_the_context_is_a_limit_error(
    checkpoint: Path, ct_request: EngineRequest
) -> None:
    engine = TransformersEngine(checkpoint)
    too_long = ct_request.model_copy(update={"max_new_tokens": 8192})
    with pytest.raises(EngineLimitError, match="context of 8192 tokens"):
        engine.generate(too_long)


def test_unreadable_jpeg_is_a_clear_error(checkpoint: Path) -> None:
    engine = TransformersEngine(checkpoint)
    broken = ImagePart(jpeg=b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    request = EngineRequest(parts=(TextPart(text="Describe."), broken), max_new_tokens=2)
    with pytest.raises(EngineError, match="part 2 is not a readable JPEG"):
        engine.generate(request)


def test_missing_directory_names_the_path(tmp_path: Path, ct_request: EngineRequest) -> None:
    missing = tmp_path / "models" / "medgemma-1.5-4b-it"
    engine = TransformersEngine(missing)
    with pytest.raises(EngineUnavailable, match="no MedGemma checkpoint directory") as raised:
        engine.generate(ct_request)
    assert str(missing) in str(raised.value)
    assert "RADIANT_AI_MODEL_DIR" in str(raised.value)
    assert engine.load_count == 0


def test_not_a_gemma3_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    with pytest.raises(EngineUnavailable, match=r"'llama' checkpoint, not Gemma 3 / MedGemma"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(EngineUnavailable, match="cannot be read as JSON"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(EngineUnavailable, match=r"has no config\.json"):
        inspect_checkpoint(tmp_path)


def test_gptq_checkpoint_without_gptqmodel_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ct_request: EngineRequest
) -> None:
    config = {
        "model_type": "gemma3",
        "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128},
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    real = transformers_engine._module_available
    monkeypatch.setattr(
        transformers_engine, "_module_available", lambda name: name != "gptqmodel" and real(name)
    )
    engine = TransformersEngine(tmp_path)
    with pytest.raises(EngineUnavailable, match="pip install gptqmodel") as raised:
        engine.generate(ct_request)
    assert "GPTQ-quantized" in str(raised.value)
    assert "gptqmodel" in str(raised.value).split("pip install")[0]
    assert "AutoGPTQ" in str(raised.value)
    assert engine.load_count == 0


IMAGE_RUN = re.compile(r"<start_of_image>(?:<image_soft_token>)+<end_of_image>")


def test_rendered_prompt_keeps_every_label_on_its_own_line(checkpoint: Path) -> None:
    """Gemma 3's template trims each text part; the rendered prompt must still read
    ``SLICE n`` followed by a line break, also before the question and between the PRIOR and
    CURRENT blocks (joined text parts), never ``SLICE 3Based on``."""
    engine = TransformersEngine(checkpoint)
    images = ct_slice_jpegs(count=3)
    primary = EngineRequest(
        parts=engine_parts(build_primary(modality="CT", image_count=3, body_part="head"), images),
        max_new_tokens=1,
    )
    prompt = engine.prompt_text(primary)

    texts = IMAGE_RUN.split(prompt)
    assert len(texts) == 4  # three images, each expanded by the processor
    assert texts[0].startswith("<bos><start_of_turn>user\nYou are assisting a radiologist")
    assert texts[0].endswith("\n\n")  # the instruction, then a blank line, then the image
    assert texts[1] == "\n\nSLICE 1\n\n"
    assert texts[2] == "\n\nSLICE 2\n\n"
    assert texts[3].startswith("\n\nSLICE 3\n\nBased on the visual evidence")
    assert texts[3].endswith("<end_of_turn>\n<start_of_turn>model\n")
    assert "SLICE 3Based" not in prompt

    comparison = EngineRequest(
        parts=engine_parts(
            build_comparison(
                modality="CT", prior_image_count=2, current_image_count=2, body_part="head"
            ),
            images[:2],
            images[1:],
        ),
        max_new_tokens=1,
    )
    texts = IMAGE_RUN.split(engine.prompt_text(comparison))
    assert texts[0].endswith(".\n\nPRIOR STUDY\n\n")  # the instruction, a blank line, the label
    assert texts[1:4] == [
        "\n\nPRIOR SLICE 1\n\n",
        "\n\nPRIOR SLICE 2\n\nCURRENT STUDY\n\n",
        "\n\nCURRENT SLICE 1\n\n",
    ]
    assert texts[4].startswith("\n\nCURRENT SLICE 2\n\nBased on the visual evidence")
