"""MedGemma behind any OpenAI-compatible chat-completions server (llama.cpp, Ollama, vLLM) or a
Vertex AI endpoint.

Request body (one user turn, the parts in the request's order; a system message first when
given)::

    {"model": ..., "temperature": 0, "max_tokens": N, "stream": false,
     "messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": [{"type": "text", "text": "..."},
                      {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}},
                      ...]}]}

Consecutive text parts go as one text part joined by a blank line (the server's Gemma 3 chat
template trims each part and would glue them, see :func:`ai.engines.base.joined_parts`), so the
last ``SLICE n`` and the question arrive as ``"SLICE 85\n\nBased on ..."``.

It is POSTed to ``<endpoint>/chat/completions``. With ``vertex`` the same body (less ``stream``)
becomes ``{"instances": [{"@requestFormat": "chatCompletions", ...}]}`` POSTed to the
endpoint's ``:predict`` URL, and the answer's ``predictions`` holds the chat completion (a
single object; a one-element list is accepted too).

Retries (tenacity): connection errors, timeouts, 429 and 5xx, with exponential back-off,
a bounded number of attempts, and a 429/503 ``Retry-After`` honoured (a wait longer than the
configured maximum ends the retries at once). Other 4xx are never retried. A server answer that
the context, the number of images or an image's size is over its limit raises
:class:`EngineLimitError`; exhausted retries raise :class:`EngineUnreachable`.

The bearer token is read from the key file on every request, so a token refreshed by another
process (a Vertex AI access token lasts one hour) is picked up without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception

from ai.engines.base import (
    EngineError,
    EngineName,
    EngineRequest,
    EngineResponse,
    EngineUnavailable,
    EngineUnreachable,
    ImagePart,
    Route,
    joined_parts,
)
from ai.engines.openai_errors import (
    RetryableStatus,
    error_message,
    limit_error,
    limit_kind,
    parse_retry_after,
    retryable,
)

log = structlog.get_logger("radiant.ai.openai")

__all__ = [
    "EndpointConfig",
    "OpenAIEngine",
    "RetryPolicy",
    "limit_kind",
    "parse_retry_after",
]

@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One OpenAI-compatible endpoint and how to talk to it.

    ``url`` is the API base (``http://host:8080/v1``) or, with ``vertex``, the endpoint's
    ``...:predict`` URL. ``setting_prefix`` names the settings in error messages.
    """

    url: str
    model: str
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    vertex: bool = False
    route: Route = "local"
    setting_prefix: str = "RADIANT_AI_"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and waits for transient failures (seconds)."""

    max_attempts: int = 4
    base_wait_s: float = 1.0
    max_wait_s: float = 60.0
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0


class OpenAIEngine:
    """Chat completions over HTTP with retries; thread-safe (one httpx client, no state)."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if urlsplit(endpoint.url).scheme not in ("http", "https"):
            raise EngineUnavailable(
                f"{endpoint.setting_prefix}ENDPOINT must be an http(s) URL, got {endpoint.url!r}"
            )
        self.endpoint = endpoint
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.policy.timeout_s, connect=self.policy.connect_timeout_s),
            transport=transport,
            follow_redirects=False,
        )
        self.url = self._request_url()

    @property
    def name(self) -> EngineName:
        return "openai"

    def describe(self) -> dict[str, str | bool | None]:
        parts = urlsplit(self.endpoint.url)
        return {
            "engine": "openai",
            "configured": True,
            "route": self.endpoint.route,
            "endpoint": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "model": self.endpoint.model or None,
            "vertex": self.endpoint.vertex,
            "authenticated": bool(self.endpoint.api_key or self.endpoint.api_key_file),
        }

    def close(self) -> None:
        self._client.close()

    def _request_url(self) -> str:
        url = self.endpoint.url.rstrip("/")
        if self.endpoint.vertex:
            return url if url.endswith(":predict") else url + ":predict"
        if url.endswith("/chat/completions"):
            return url
        return url + "/chat/completions"

    def _bearer(self) -> str | None:
        if self.endpoint.api_key is not None:
            return self.endpoint.api_key.get_secret_value().strip() or None
        if self.endpoint.api_key_file is not None:
            try:
                token = self.endpoint.api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise EngineUnavailable(
                    f"{self.endpoint.setting_prefix}API_KEY_FILE {self.endpoint.api_key_file} "
                    f"cannot be read ({exc.strerror or exc.__class__.__name__})"
                ) from None
            if not token:
                raise EngineUnavailable(
                    f"{self.endpoint.setting_prefix}API_KEY_FILE {self.endpoint.api_key_file} "
                    "is empty"
                )
            return token
        return None

    def build_body(self, request: EngineRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (Vertex-wrapped when configured); consecutive text
        parts are sent as one (:func:`ai.engines.base.joined_parts`)."""
        content: list[dict[str, Any]] = []
        for part in joined_parts(request.parts):
            if isinstance(part, ImagePart):
                encoded = base64.b64encode(part.jpeg).decode("ascii")
                content.append(
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{encoded}"}}
                )
            else:
                content.append({"type": "text", "text": part.text})
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": content})
        chat: dict[str, Any] = {}
        if self.endpoint.model:
            chat["model"] = self.endpoint.model
        chat |= {"messages": messages, "max_tokens": request.max_new_tokens, "temperature": 0}
        if self.endpoint.vertex:
            return {"instances": [{"@requestFormat": "chatCompletions", **chat}]}
        return chat | {"stream": False}

    def _wait(self, state: RetryCallState) -> float:
        backoff = self.policy.base_wait_s * (2 ** (state.attempt_number - 1))
        wait = min(backoff, self.policy.max_wait_s)
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableStatus) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return float(wait)

    def _stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.policy.max_attempts:
            return True
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        return (
            isinstance(error, RetryableStatus)
            and error.retry_after is not None
            and error.retry_after > self.policy.max_wait_s
        )

    def _before_sleep(self, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        log.warning(
            "ai.openai.retry",
            route=self.endpoint.route,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=type(error).__name__ if error is not None else None,
            status=getattr(error, "status", None),
        )

    def _post_once(self, body: bytes, request: EngineRequest) -> httpx.Response:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self._client.post(self.url, content=body, headers=headers)
        if response.is_success:
            return response
        message = error_message(response)
        kind = limit_kind(message)
        status = response.status_code
        if kind is not None and status != 429:
            raise limit_error(message, kind, request)
        if status == 413:
            raise limit_error(message, "image", request)
        if status == 429 or status >= 500:
            raise RetryableStatus(
                status, message, parse_retry_after(response.headers.get("Retry-After"))
            )
        prefix = self.endpoint.setting_prefix
        if status in (401, 403):
            raise EngineError(
                f"the AI endpoint refused the credentials (HTTP {status}): check "
                f"{prefix}API_KEY or {prefix}API_KEY_FILE ({message})"
            )
        if status == 404:
            raise EngineError(
                f"the AI endpoint has no chat-completions route at {self.url} (HTTP 404): check "
                f"{prefix}ENDPOINT (an API base URL such as http://host:8080/v1) and "
                f"{prefix}MODEL ({message})"
            )
        raise EngineError(f"the AI endpoint rejected the request (HTTP {status}): {message}")

    def generate(self, request: EngineRequest) -> EngineResponse:
        body = json.dumps(self.build_body(request), ensure_ascii=False).encode("utf-8")
        body_sha256 = hashlib.sha256(body).hexdigest()
        started = time.perf_counter()
        retrying = Retrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception(retryable),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    response = self._post_once(body, request)
        except RetryableStatus as exc:
            asked = ""
            if exc.retry_after is not None and exc.retry_after > self.policy.max_wait_s:
                asked = (
                    f"; it asked to retry after {exc.retry_after:g} s, more than "
                    f"RADIANT_AI_RETRY_MAX_WAIT_S={self.policy.max_wait_s:g}"
                )
            raise EngineUnreachable(
                f"the {self.endpoint.route} AI endpoint kept failing: HTTP {exc.status} after "
                f"{attempts} attempt(s){asked} ({exc.message})"
            ) from None
        except httpx.TransportError as exc:
            raise EngineUnreachable(
                f"the {self.endpoint.route} AI endpoint {urlsplit(self.url).netloc} could not be "
                f"reached after {attempts} attempt(s): {type(exc).__name__} {exc}"
            ) from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        result = self._read_completion(response)
        log.info(
            "ai.openai.generated",
            route=self.endpoint.route,
            request_id=request.request_id,
            images=request.image_count,
            attempts=attempts,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            latency_ms=round(latency_ms, 1),
            finish_reason=result.finish_reason,
        )
        return result.model_copy(update={"latency_ms": latency_ms, "request_sha256": body_sha256})

    def _read_completion(self, response: httpx.Response) -> EngineResponse:
        try:
            data: Any = response.json()
        except ValueError:
            raise EngineError("the AI endpoint answered with something that is not JSON") from None
        if self.endpoint.vertex and isinstance(data, dict) and "predictions" in data:
            data = data["predictions"]
            if isinstance(data, list):
                data = data[0] if data else None
        if not isinstance(data, dict):
            raise EngineError("the AI endpoint's answer is not a chat completion object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EngineError("the AI endpoint's answer has no choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise EngineError("the AI endpoint's answer has no message")
        text = _message_text(message)
        usage_raw = data.get("usage")
        usage: dict[str, Any] = usage_raw if isinstance(usage_raw, dict) else {}
        return EngineResponse(
            text=text,
            model_id=str(data.get("model") or self.endpoint.model or "unknown"),
            model_revision=(
                str(data["system_fingerprint"]) if data.get("system_fingerprint") else None
            ),
            engine="openai",
            route=self.endpoint.route,
            tokens_in=_int_or_none(usage.get("prompt_tokens")),
            tokens_out=_int_or_none(usage.get("completion_tokens")),
            latency_ms=0.0,
            finish_reason=str(choice["finish_reason"]) if choice.get("finish_reason") else None,
        )


def _message_text(message: dict[str, Any]) -> str:
    """The answer text with the thinking trace kept.

    Servers with a reasoning parser (llama.cpp ``--reasoning-format``, vLLM) move the trace to
    ``reasoning_content``; it is put back between MedGemma's markers so ``ai.parsing`` sees
    what the model wrote.
    """
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(item.get("text", "")) for item in content if isinstance(item, dict))
    text = content if isinstance(content, str) else ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip() and "<unused95>" not in text:
        text = f"<unused94>{reasoning}<unused95>{text}"
    if not text:
        raise EngineError("the AI endpoint's answer has no text")
    return text


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
