"""The box itself: data dir, mode, secret, site name, logging and the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from appliance.config.base import ENV_PREFIX, Mode


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    data_dir: Path = Path("data")
    mode: Mode = Mode.OFFLINE
    secret_key: SecretStr | None = None
    site_name: str = "RadiantAI"
    log_level: str = "info"
    db_busy_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    # Apply pending database migrations when the appliance starts. The updater starts a new
    # release with this off, checks its /healthz, and only then runs `radiant migrate`.
    db_migrate_at_start: bool = True

    @field_validator("log_level")
    @classmethod
    def _core_log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return level

    @field_validator("secret_key")
    @classmethod
    def _core_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (or unset to generate one)")
        return value

    @property
    def db_path(self) -> Path:
        return self.data_dir / "radiant.db"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"
