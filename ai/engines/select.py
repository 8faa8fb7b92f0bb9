"""Choose the engine from the settings.

``RADIANT_AI_ENGINE`` names the LOCAL engine: ``transformers`` (a checkpoint directory),
``openai`` (an OpenAI-compatible server on the box or the clinic's network, e.g. llama.cpp on a
Jetson) or ``none`` (the default: drafts are refused with what to configure).

In ``offline`` mode the local engine is used (the host says which mode through
:meth:`ai.settings.AiSettings.online_active`). In ``online`` mode with
``RADIANT_AI_ONLINE_ENDPOINT`` set, requests go to that endpoint first; when it cannot be reached
(connection error, timeout, 429 or 5xx after its retries) and ``RADIANT_AI_ONLINE_FALLBACK`` is
true, the local engine answers instead and the response says so (``route="local"``,
``fallback_reason``). Other online failures (credentials, limits) are raised, not hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from ai.engines.base import (
    Engine,
    EngineName,
    EngineRequest,
    EngineResponse,
    EngineUnreachable,
)
from ai.engines.none_engine import NoneEngine
from ai.engines.openai_engine import EndpointConfig, OpenAIEngine, RetryPolicy
from ai.engines.transformers_engine import TransformersEngine
from ai.settings import AiSettings

log = structlog.get_logger("radiant.ai.select")


def retry_policy(settings: AiSettings) -> RetryPolicy:
    """The retry and timeout settings of the HTTP engines."""
    return RetryPolicy(
        max_attempts=settings.ai_max_attempts,
        base_wait_s=settings.ai_retry_base_s,
        max_wait_s=settings.ai_retry_max_wait_s,
        timeout_s=settings.ai_timeout_s,
        connect_timeout_s=settings.ai_connect_timeout_s,
    )


def local_engine(settings: AiSettings, *, sleep: Callable[[float], None] = time.sleep) -> Engine:
    """The engine named by ``RADIANT_AI_ENGINE`` (nothing is loaded or contacted yet)."""
    if settings.ai_engine == "transformers":
        return TransformersEngine(settings.ai_model_path)
    if settings.ai_engine == "openai" and settings.ai_endpoint:
        endpoint = EndpointConfig(
            url=settings.ai_endpoint,
            model=settings.ai_model,
            api_key=settings.ai_api_key,
            api_key_file=settings.ai_api_key_file,
            vertex=settings.ai_vertex,
            route="local",
            setting_prefix="RADIANT_AI_",
        )
        return OpenAIEngine(endpoint, retry_policy(settings), sleep=sleep)
    return NoneEngine(settings.ai_model_path)


class OnlineEngine:
    """The online endpoint, with the local engine as fallback when it is unreachable."""

    def __init__(self, online: Engine, fallback: Engine | None) -> None:
        self.online = online
        self.fallback = fallback

    @property
    def name(self) -> EngineName:
        return self.online.name

    def describe(self) -> dict[str, str | bool | None]:
        info: dict[str, str | bool | None] = {
            f"online_{key}": value for key, value in self.online.describe().items()
        }
        if self.fallback is not None:
            info |= {f"fallback_{key}": value for key, value in self.fallback.describe().items()}
        info["engine"] = "online"
        info["configured"] = True
        return info

    def generate(self, request: EngineRequest) -> EngineResponse:
        try:
            return self.online.generate(request)
        except EngineUnreachable as exc:
            if self.fallback is None:
                raise
            if self.fallback.name == "none":
                raise EngineUnreachable(
                    f"{exc}; no local engine to fall back to (RADIANT_AI_ENGINE=none)"
                ) from None
            reason = str(exc)
            log.warning(
                "ai.online.fallback",
                request_id=request.request_id,
                local_engine=self.fallback.name,
                reason=reason,
            )
        response = self.fallback.generate(request)
        return response.model_copy(update={"fallback_reason": reason})

    def close(self) -> None:
        self.online.close()
        if self.fallback is not None:
            self.fallback.close()


def build_engine(settings: AiSettings, *, sleep: Callable[[float], None] = time.sleep) -> Engine:
    """The engine for the current mode (see the module docstring)."""
    local = local_engine(settings, sleep=sleep)
    if not settings.online_active():
        return local
    if not settings.ai_online_endpoint:
        log.warning("ai.online.no_endpoint", local_engine=local.name)
        return local
    endpoint = EndpointConfig(
        url=settings.ai_online_endpoint,
        model=settings.ai_online_model,
        api_key=settings.ai_online_api_key,
        api_key_file=settings.ai_online_api_key_file,
        vertex=settings.ai_online_vertex,
        route="online",
        setting_prefix="RADIANT_AI_ONLINE_",
    )
    online = OpenAIEngine(endpoint, retry_policy(settings), sleep=sleep)
    return OnlineEngine(online, local if settings.ai_online_fallback else None)
