"""What every settings group shares: the ``RADIANT_`` prefix, the error type, the mode."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import Field

ENV_PREFIX = "RADIANT_"
Port = Annotated[int, Field(ge=1, le=65535)]


class Mode(enum.StrEnum):
    """Where inference and replication go: ``offline`` keeps everything on the box."""

    OFFLINE = "offline"
    ONLINE = "online"


class ConfigError(Exception):
    """A setting is invalid; the message is one line naming the variable."""


def blank_is_unset(value: Any) -> Any:
    """An empty or all-space variable means "not set" for optional fields."""
    return None if isinstance(value, str) and not value.strip() else value
