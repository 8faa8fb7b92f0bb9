"""First boot and the fleet (provisioning/): `radiant provision` writes its answers to
<data_dir>/provisioned.env, accepted fleet documents to <data_dir>/fleet.env."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from appliance.config.base import ENV_PREFIX

_CHANNEL = re.compile(r"[a-z][a-z0-9-]{0,31}")


def check_timezone(value: str) -> str:
    """An IANA time zone name known to this system's tz database, e.g. ``Africa/Abidjan``."""
    name = value.strip()
    # ZoneInfo would also accept some relative paths; only plain tz database names pass here.
    if not name or name.startswith(("/", ".")) or ".." in name or "\\" in name:
        raise ValueError(f"{value!r} is not a time zone name (e.g. Europe/Paris, UTC)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Paris, UTC)") from None
    return name


def check_software_channel(value: str) -> str:
    """Update channel name: lowercase letters, digits and ``-``, e.g. ``stable``, ``beta``."""
    channel = value.strip()
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(
            f"{value!r} is not a channel name (1-32 lowercase letters, digits or '-', e.g. stable)"
        )
    return channel


class FleetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    timezone: str = "UTC"
    language: Literal["en", "fr"] = "en"
    fleet_interval_s: Annotated[float, Field(ge=0.1, le=86_400)] = 60.0
    fleet_stale_s: Annotated[float, Field(ge=1, le=30 * 86_400)] = 600.0
    software_channel: str = "stable"

    @field_validator("timezone")
    @classmethod
    def _fleet_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("language", mode="before")
    @classmethod
    def _fleet_language(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("software_channel")
    @classmethod
    def _fleet_software_channel(cls, value: str) -> str:
        return check_software_channel(value)
