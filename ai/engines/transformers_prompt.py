"""The local engine's prompt: a request as chat messages for the processor's template (a system
turn when given, then one user turn with text and images in order) and the processor's inputs,
with the ``token_type_ids`` Gemma 3 needs."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from ai.engines.base import EngineError, EngineRequest, ImagePart, joined_parts


def chat_messages(request: EngineRequest) -> list[dict[str, Any]]:
    """The request as chat messages for the processor's template: a system turn when given, then
    ONE user turn with the parts in order (consecutive text parts joined, see
    :func:`ai.engines.base.joined_parts`; images as PIL images)."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
    content: list[dict[str, Any]] = []
    for position, part in enumerate(joined_parts(request.parts)):
        if isinstance(part, ImagePart):
            content.append({"type": "image", "image": _decode_jpeg(part.jpeg, position)})
        else:
            content.append({"type": "text", "text": part.text})
    messages.append({"role": "user", "content": content})
    return messages


def tokenized(processor: Any, request: EngineRequest) -> Any:
    """The processor's inputs (input_ids, attention_mask, token_type_ids, pixel_values)."""
    try:
        inputs = processor.apply_chat_template(
            chat_messages(request),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise EngineError(f"the processor could not build the prompt: {exc}") from None
    if "token_type_ids" not in inputs:
        raise EngineError(
            "the processor returned no token_type_ids; MedGemma needs them (is this a "
            "Gemma 3 processor?)"
        )
    return inputs


def _decode_jpeg(data: bytes, position: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise EngineError(f"part {position + 1} is not a readable JPEG image: {exc}") from None
