"""MedGemma engines: one protocol (:mod:`ai.engines.base`), a local ``transformers`` engine, an
OpenAI-compatible HTTP engine, a ``none`` engine, and :func:`build_engine` choosing between
them from the settings. Importing this package never imports torch or transformers.
"""

from ai.engines.base import (
    Engine,
    EngineError,
    EngineLimitError,
    EnginePart,
    EngineRequest,
    EngineResponse,
    EngineUnavailable,
    EngineUnreachable,
    ImagePart,
    TextPart,
    engine_parts,
    joined_parts,
)
from ai.engines.select import build_engine, local_engine

__all__ = [
    "Engine",
    "EngineError",
    "EngineLimitError",
    "EnginePart",
    "EngineRequest",
    "EngineResponse",
    "EngineUnavailable",
    "EngineUnreachable",
    "ImagePart",
    "TextPart",
    "build_engine",
    "engine_parts",
    "joined_parts",
    "local_engine",
]
