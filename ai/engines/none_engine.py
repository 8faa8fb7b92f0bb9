"""The engine used when no AI engine is configured: it refuses every request with what to set.

The rest of the appliance keeps working: studies are received, viewed, reported and exported
without model drafts.
"""

from __future__ import annotations

from pathlib import Path

from ai.engines.base import EngineName, EngineRequest, EngineResponse, EngineUnavailable


def not_configured_message(model_dir: Path) -> str:
    """The actionable sentence shown wherever a draft was asked for and no engine exists."""
    return (
        "No AI engine is configured: set RADIANT_AI_ENGINE=openai with "
        "RADIANT_AI_ENDPOINT=<base URL of an OpenAI-compatible server, e.g. "
        "http://127.0.0.1:8080/v1> (llama.cpp, Ollama, vLLM, Vertex AI), or install a MedGemma "
        f"checkpoint in {model_dir} (pip install 'radiantai[local-ai]') and set "
        "RADIANT_AI_ENGINE=transformers. Everything else keeps working without AI drafts."
    )


class NoneEngine:
    """Refuses with :func:`not_configured_message`."""

    def __init__(self, model_dir: Path) -> None:
        self._model_dir = model_dir

    @property
    def name(self) -> EngineName:
        return "none"

    def generate(self, request: EngineRequest) -> EngineResponse:
        raise EngineUnavailable(not_configured_message(self._model_dir))

    def describe(self) -> dict[str, str | bool | None]:
        return {"engine": "none", "configured": False}

    def close(self) -> None:
        return None
