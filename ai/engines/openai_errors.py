"""Reading an OpenAI-compatible server's failures: which answers are worth retrying
(429, 5xx, transport errors), the ``Retry-After`` header (RFC 9110 section 10.2.3), the error
text, and the limit errors (context, images) with advice on which server setting to raise."""

from __future__ import annotations

import email.utils
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import httpx

from ai.engines.base import EngineLimitError, EngineRequest

#: Server error text (llama.cpp, vLLM, OpenAI, Ollama) meaning the prompt exceeds the context.
_CONTEXT_LIMIT = re.compile(
    r"context[_ ]length|maximum context|context size|context window|exceed_context_size"
    r"|max_model_len|maximum model length|prompt is too long|too many tokens"
    r"|input is too large|n_ctx",
    re.IGNORECASE,
)
#: Server error text meaning too many images, images not accepted, or an image too large.
_IMAGE_LIMIT = re.compile(
    r"at most \d+ image|too many images|image input is not supported|images? (?:is |are )?too large"
    r"|image[^.]{0,40}exceeds|exceeds[^.]{0,40}image|maximum (?:number of )?images"
    r"|limit[_ ]mm[_ ]per[_ ]prompt",
    re.IGNORECASE,
)
_MAX_MESSAGE = 300



class RetryableStatus(Exception):
    """A 429 or 5xx answer that may succeed later."""

    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, RetryableStatus | httpx.TransportError)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_message(response: httpx.Response) -> str:
    """The server's error text: ``error.message`` / ``error`` / ``detail`` / the body, cut."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip()[:_MAX_MESSAGE] or response.reason_phrase
    message: Any = body
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            parts = [str(error.get(key)) for key in ("type", "code") if error.get(key)]
            message = " ".join([str(error.get("message", "")), *parts]).strip()
        elif error is not None:
            message = error
    text = message if isinstance(message, str) else json.dumps(message)
    return text.strip()[:_MAX_MESSAGE] or response.reason_phrase


def limit_kind(message: str) -> str | None:
    """``context`` or ``image`` when a server error text is about a limit, else None."""
    if _IMAGE_LIMIT.search(message):
        return "image"
    if _CONTEXT_LIMIT.search(message):
        return "context"
    return None


def limit_error(message: str, kind: str, request: EngineRequest) -> EngineLimitError:
    if kind == "image":
        advice = (
            f"the server cannot take {request.image_count} images of this size: raise its "
            "image limit (vLLM --limit-mm-per-prompt, llama.cpp needs the --mmproj projector) "
            "or send fewer images"
        )
    else:
        advice = (
            f"the prompt with {request.image_count} images (256 tokens each) does not fit the "
            "server's context: raise it (llama.cpp -c, vLLM --max-model-len, Ollama num_ctx) "
            "or send fewer images"
        )
    return EngineLimitError(f"{advice} (server said: {message})")
