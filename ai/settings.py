"""The model engines' own settings (``RADIANT_AI_*``): which local engine, its checkpoint or
server, the online endpoint and retries. The appliance's settings include these fields (see
:class:`appliance.config.Settings`); ``ai`` reads nothing else of the appliance.

Two answers depend on the host and are hooks here: whether the online route is active now
(:meth:`AiSettings.online_active`, the appliance's online/offline mode) and where checkpoints
live by default (:meth:`AiSettings.models_root`, the appliance's data dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AI_ENV_PREFIX = "RADIANT_"
DEFAULT_MODEL = "google/medgemma-1.5-4b-it"
DEFAULT_CHECKPOINT_DIR = "medgemma-1.5-4b-it"


class AiSettings(BaseSettings):
    """MedGemma engines (ai/engines): the local engine, the online endpoint, retries."""

    model_config = SettingsConfigDict(
        env_prefix=AI_ENV_PREFIX, extra="ignore", validate_default=True
    )

    ai_engine: Literal["transformers", "openai", "none"] = "none"
    ai_model_dir: Path | None = None
    ai_endpoint: str | None = None
    ai_model: str = DEFAULT_MODEL
    ai_api_key: SecretStr | None = None
    ai_api_key_file: Path | None = None
    ai_vertex: bool = False
    ai_online_endpoint: str | None = None
    ai_online_model: str = DEFAULT_MODEL
    ai_online_api_key: SecretStr | None = None
    ai_online_api_key_file: Path | None = None
    ai_online_vertex: bool = False
    ai_online_fallback: bool = True
    ai_timeout_s: Annotated[float, Field(ge=1, le=3600)] = 300.0
    ai_connect_timeout_s: Annotated[float, Field(ge=0.1, le=120)] = 10.0
    ai_max_attempts: Annotated[int, Field(ge=1, le=10)] = 4
    ai_retry_base_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    ai_retry_max_wait_s: Annotated[float, Field(ge=0, le=600)] = 60.0

    @field_validator(
        "ai_model_dir",
        "ai_endpoint",
        "ai_api_key",
        "ai_api_key_file",
        "ai_online_endpoint",
        "ai_online_api_key",
        "ai_online_api_key_file",
        mode="before",
    )
    @classmethod
    def _ai_blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ai_engine", mode="before")
    @classmethod
    def _ai_engine(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("ai_endpoint", "ai_online_endpoint")
    @classmethod
    def _ai_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.field_name == "ai_endpoint" and info.data.get("ai_engine") == "openai":
                raise ValueError("must be set when RADIANT_AI_ENGINE=openai (the server's URL)")
            return None
        url = value.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8080/v1")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: use the API_KEY or API_KEY_FILE setting")
        return url

    @field_validator("ai_api_key_file", "ai_online_api_key_file")
    @classmethod
    def _ai_key_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        key_field = info.field_name.removesuffix("_file") if info.field_name else ""
        if value is not None and info.data.get(key_field) is not None:
            raise ValueError(
                f"set either {AI_ENV_PREFIX}{key_field.upper()} or this file, not both"
            )
        return value

    def online_active(self) -> bool:
        """Whether requests go to the online endpoint first (the host's mode decides; never
        on their own)."""
        return False

    def models_root(self) -> Path:
        """Where checkpoints are installed (the host's data dir decides)."""
        return Path("models")

    @property
    def ai_model_path(self) -> Path:
        """The local MedGemma checkpoint directory (default ``<models root>/medgemma-...``)."""
        return self.ai_model_dir or self.models_root() / DEFAULT_CHECKPOINT_DIR
