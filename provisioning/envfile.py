"""Settings files in the data dir (``provisioned.env``, ``fleet.env``): ``RADIANT_*`` lines that
:func:`appliance.config.load_settings` reads below the environment.

Values are written single-quoted (python-dotenv's form without expansion; ``\\`` and ``'`` are
escaped), one per line; a value with a line break, a NUL or ``${`` (which pydantic-settings
would expand) is refused. Files are 0600 (they hold
the bucket's credentials), replaced atomically and fsynced.
"""

from __future__ import annotations

from pathlib import Path

from dotenv import dotenv_values

from appliance.config import ENV_PREFIX
from provisioning.signing import write_atomic

PROVISIONED_ENV = "provisioned.env"
FLEET_ENV = "fleet.env"


def quote(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("cannot hold a line break")
    if "${" in value:  # pydantic-settings expands ${NAME} even in single quotes
        raise ValueError("cannot contain '${'")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(values: dict[str, str], header: str) -> str:
    """The file's text: ``header`` as comment lines, then ``RADIANT_FIELD='value'`` lines."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{ENV_PREFIX}{field.upper()}={quote(value)}" for field, value in values.items()]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"), mode=0o600)


def read(path: Path) -> dict[str, str]:
    """{field: value} of an env file written by :func:`render` (empty when it does not exist)."""
    if not path.is_file():
        return {}
    values = dotenv_values(path, interpolate=False)
    return {
        key.removeprefix(ENV_PREFIX).lower(): value or ""
        for key, value in values.items()
        if key.startswith(ENV_PREFIX)
    }
