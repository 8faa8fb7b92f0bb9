"""The one protocol every MedGemma engine speaks, its request and response, and its errors.

An engine takes ONE user turn as ordered parts (text and JPEG images, in the order the prompt
builder produced them: instruction, each image followed by its ``SLICE n`` label, question last)
and an optional system text, and returns the model's raw answer text with the thinking trace
kept (``ai.parsing`` strips it). The raw text never leaves ``ai/`` except through
``ai.safety.apply_safety``.

Gemma 3's chat template trims every text part and writes the parts back to back, so two text
parts in a row would run together ("SLICE 85Based on the visual evidence"). Engines therefore
render :func:`joined_parts`: consecutive text parts become one, joined by
:data:`PART_SEPARATOR`, whose newlines are inside the text and so survive the trim. Between an
image and a text the processor itself puts ``\n\n`` (``\n\n<start_of_image>...<end_of_image>\n\n``),
so every label ends up on its own line: ``SLICE 1\n\n<start_of_image>``.

Errors:

- :class:`EngineUnavailable`: nothing can run (not configured, package or checkpoint missing);
  the message says what to install or set.
- :class:`EngineLimitError`: the request does not fit the engine (context length, number or
  size of images); retrying the same request cannot help.
- :class:`EngineUnreachable`: a remote engine did not answer usefully (connection error,
  timeout, 429 or 5xx) after its retries; the online route may fall back to the local engine.
- :class:`EngineError`: anything else (bad credentials, a malformed answer, a model failure).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ai.prompts import ImagePart as PromptImagePart
from ai.prompts import PromptRequest

EngineName = Literal["transformers", "openai", "none"]
Route = Literal["local", "online"]

#: JPEG files start with the SOI marker followed by another marker.
_JPEG_MAGIC = b"\xff\xd8\xff"
#: What joins two consecutive text parts (the same blank line Gemma 3 puts around an image).
PART_SEPARATOR = "\n\n"


class EngineError(Exception):
    """The engine failed on this request; the message is safe to log (no PHI, no secrets)."""


class EngineUnavailable(EngineError):
    """No inference is possible with the current installation or configuration."""


class EngineLimitError(EngineError):
    """The request exceeds the engine's context, image count or image size limit."""


class EngineUnreachable(EngineError):
    """A remote engine could not be reached or kept failing (connection, timeout, 429, 5xx)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextPart(_Frozen):
    """A piece of text of the user turn."""

    type: Literal["text"] = "text"
    text: str


class ImagePart(_Frozen):
    """One image of the user turn, already prepared and encoded as JPEG."""

    type: Literal["image"] = "image"
    jpeg: bytes = Field(repr=False)

    @model_validator(mode="after")
    def _is_jpeg(self) -> ImagePart:
        if not self.jpeg.startswith(_JPEG_MAGIC):
            raise ValueError("image part is not JPEG data (no FF D8 FF start marker)")
        return self


EnginePart = TextPart | ImagePart


class EngineRequest(_Frozen):
    """One generation: optional system text, ONE user turn as ordered parts, a token budget.

    ``request_id`` only correlates log lines (never PHI).
    """

    system: str | None = None
    parts: tuple[EnginePart, ...]
    max_new_tokens: int = Field(default=2048, ge=1, le=32_768)
    request_id: str | None = None

    @model_validator(mode="after")
    def _has_content(self) -> EngineRequest:
        if not self.parts:
            raise ValueError("an engine request needs at least one part")
        return self

    @property
    def image_count(self) -> int:
        return sum(1 for part in self.parts if isinstance(part, ImagePart))


class EngineResponse(_Frozen):
    """The model's raw answer (thinking trace kept) and how it was produced.

    ``engine`` and ``route`` name the engine that actually answered; ``fallback_reason`` is set
    when the online endpoint failed and the local engine answered instead. Token counts are None
    when a server does not report them. ``finish_reason`` is ``stop`` (end of turn) or
    ``length`` (token budget used up) when known.
    """

    text: str
    model_id: str
    model_revision: str | None
    engine: EngineName
    route: Route = "local"
    tokens_in: int | None
    tokens_out: int | None
    latency_ms: float
    finish_reason: str | None = None
    fallback_reason: str | None = None
    #: SHA-256 of the exact request body sent over HTTP (remote engines; None for local ones).
    request_sha256: str | None = None


@runtime_checkable
class Engine(Protocol):
    """What the analysis pipeline calls. ``generate`` is blocking and thread-safe."""

    @property
    def name(self) -> EngineName: ...

    def generate(self, request: EngineRequest) -> EngineResponse: ...

    def describe(self) -> dict[str, str | bool | None]: ...

    def close(self) -> None: ...


def engine_parts(
    prompt: PromptRequest,
    images: Sequence[bytes],
    prior_images: Sequence[bytes] = (),
) -> tuple[EnginePart, ...]:
    """The prompt's parts with each image placeholder replaced by its JPEG bytes.

    ``images`` are the current study's images (by the placeholder's 0-based index);
    ``prior_images`` those of the prior study in a comparison prompt. Every image must be used
    exactly once, so a miscounted list fails here rather than shifting ``SLICE n`` labels.
    """
    pools: dict[str, list[bytes]] = {"current": list(images), "prior": list(prior_images)}
    used: dict[str, set[int]] = {"current": set(), "prior": set()}
    parts: list[EnginePart] = []
    for part in prompt.parts:
        if isinstance(part, PromptImagePart):
            study: str = part.study or "current"
            pool = pools[study]
            if not 0 <= part.index < len(pool):
                raise ValueError(
                    f"prompt wants {study} image {part.index + 1} but {len(pool)} were given"
                )
            if part.index in used[study]:
                raise ValueError(f"prompt uses {study} image {part.index + 1} twice")
            used[study].add(part.index)
            parts.append(ImagePart(jpeg=pool[part.index]))
        else:
            parts.append(TextPart(text=part.text))
    for study, pool in pools.items():
        if len(used[study]) != len(pool):
            raise ValueError(
                f"{len(pool)} {study} images were given but the prompt places {len(used[study])}"
            )
    return tuple(parts)


def joined_parts(parts: Sequence[EnginePart]) -> tuple[EnginePart, ...]:
    """The parts as an engine renders them: each run of consecutive text parts joined into one
    with :data:`PART_SEPARATOR` (each piece stripped, empty pieces dropped), images unchanged.

    A chat template that trims text parts then cannot glue a label to the next text.
    """
    out: list[EnginePart] = []
    run: list[str] = []

    def flush() -> None:
        pieces = [piece.strip() for piece in run if piece.strip()]
        if pieces:
            out.append(TextPart(text=PART_SEPARATOR.join(pieces)))
        run.clear()

    for part in parts:
        if isinstance(part, TextPart):
            run.append(part.text)
        else:
            flush()
            out.append(part)
    flush()
    return tuple(out)
