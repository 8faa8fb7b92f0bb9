"""``Settings``: every group of the appliance's settings in one object, read from ``RADIANT_*``
environment variables, the data dir's ``fleet.env`` and ``provisioned.env`` and ``.env``.

Each group is its own class in this package (``core``, ``web``, ``dicom``, ``clinical``,
``replication``, ``fleet``) and the model engines' group is :class:`ai.settings.AiSettings`; a
field ``x`` of any group is read from ``RADIANT_X`` and read back as ``settings.x``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from ai.settings import AiSettings
from appliance.config.base import ENV_PREFIX, ConfigError, Mode
from appliance.config.clinical import ClinicalSettings
from appliance.config.core import CoreSettings
from appliance.config.dicom import DicomSettings
from appliance.config.fleet import FleetSettings
from appliance.config.replication import ReplicationSettings
from appliance.config.web import WebSettings

DATA_DIR_ENV_FILES = ("provisioned.env", "fleet.env")


class Settings(
    FleetSettings,
    ReplicationSettings,
    AiSettings,
    ClinicalSettings,
    DicomSettings,
    WebSettings,
    CoreSettings,
):
    """Appliance settings; each field ``x`` is read from ``RADIANT_X``. Fields are listed group
    by group, core first (pydantic collects them from the last base to the first)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    def online_active(self) -> bool:
        """The engines' online route follows ``RADIANT_MODE`` (or the runtime switch, when
        :func:`appliance.analysis.service.engine_settings` applied it)."""
        return self.mode == Mode.ONLINE

    def models_root(self) -> Path:
        return self.data_dir / "models"


def _describe(error: ErrorDetails) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{ENV_PREFIX}{field.upper()}: {message}"


class _DataDirOnly(BaseSettings):
    """Where the data dir is, read the way :class:`Settings` reads it (before the rest)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Path("data")


def data_dir_env_files(data_dir: Path) -> tuple[Path, ...]:
    """The settings files inside the data dir, lowest priority first: the answers of
    ``radiant provision``, then the settings of the last accepted fleet document."""
    return tuple(data_dir / name for name in DATA_DIR_ENV_FILES)


def load_settings(**overrides: Any) -> Settings:
    """Read settings; ``overrides`` win (CLI flags), then the environment, then the data dir's
    ``fleet.env`` and ``provisioned.env``, then ``.env`` in the working directory.

    Raises :class:`ConfigError` with one line per the first invalid variable.
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        data_dir = Path(values["data_dir"]) if "data_dir" in values else _DataDirOnly().data_dir
        files = [path for path in data_dir_env_files(data_dir) if path.is_file()]
        # _env_file is pydantic-settings' documented init argument (not a field).
        return Settings(_env_file=(".env", *files), **values)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(f"configuration error: {_describe(exc.errors()[0])}") from None
