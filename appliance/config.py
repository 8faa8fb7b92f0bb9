"""Settings of the appliance: ``RADIANT_*`` environment variables (and an optional ``.env``).

Every field here is documented in ``.env.example``. Invalid values stop start-up with one line
naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import enum
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RADIANT_"
SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)
Port = Annotated[int, Field(ge=1, le=65535)]


class Mode(enum.StrEnum):
    """Where inference and replication go: ``offline`` keeps everything on the box."""

    OFFLINE = "offline"
    ONLINE = "online"


class ConfigError(Exception):
    """A setting is invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Appliance settings; each field ``x`` is read from ``RADIANT_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = Path("data")
    http_host: str = "127.0.0.1"
    http_port: Port = 8000
    dicom_host: str = "0.0.0.0"  # noqa: S104 (the receiver serves the clinic's network)
    dicom_port: Port = 11112
    dicom_ae_title: str = "RADIANT"
    mode: Mode = Mode.OFFLINE
    secret_key: SecretStr | None = None
    site_name: str = "RadiantAI"
    access_token_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    login_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    login_lockout_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    db_busy_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    log_level: str = "info"
    dicom_overwrite: bool = False
    stable_age_s: Annotated[float, Field(ge=1, le=86_400)] = 30.0
    min_free_gb: Annotated[float, Field(ge=0, le=100_000)] = 5.0
    dicom_peers: str = ""
    dicom_allowed_aets: str = ""
    dicom_allowed_ips: str = ""
    media_roots: str = "/media,/run/media,/mnt"
    upload_max_mb: Annotated[int, Field(ge=1, le=100_000)] = 2048

    @field_validator("dicom_ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        # PS3.5 6.2: AE is 1-16 characters of the default repertoire, no backslash or controls;
        # leading/trailing spaces are not significant.
        title = value.strip()
        if not 1 <= len(title) <= 16:
            raise ValueError("must be 1 to 16 characters")
        if any(ch == "\\" or not (" " <= ch <= "~") for ch in title):
            raise ValueError("must be printable ASCII without backslash")
        return title

    @field_validator("http_host", "dicom_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip() or any(ch.isspace() for ch in value.strip()):
            raise ValueError("must be a host name or IP address")
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return level

    @field_validator("secret_key")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (or unset to generate one)")
        return value

    @field_validator("dicom_peers")
    @classmethod
    def _peers(cls, value: str) -> str:
        parse_peers(value)
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

    @property
    def peers(self) -> dict[str, Peer]:
        return parse_peers(self.dicom_peers)

    @property
    def allowed_aets(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.dicom_allowed_aets.split(",") if a.strip())

    @property
    def allowed_ips(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.dicom_allowed_ips.split(",") if a.strip())

    @property
    def media_root_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.media_roots.split(",") if p.strip()]


@dataclass(frozen=True)
class Peer:
    """A DICOM node the appliance may send to (C-MOVE destination, PACS)."""

    ae_title: str
    host: str
    port: int


def parse_peers(value: str) -> dict[str, Peer]:
    """``AE@host:port`` entries separated by commas; the AE title names the peer."""
    peers: dict[str, Peer] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        ae, at, address = entry.partition("@")
        host, colon, port = address.rpartition(":")
        if not at or not colon or not ae.strip() or not host:
            raise ValueError(f"peer {entry!r} must look like AE_TITLE@host:port")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"peer {entry!r} has an invalid port")
        if len(ae.strip()) > 16 or "\\" in ae:
            raise ValueError(f"peer {entry!r} has an invalid AE title (1-16 characters)")
        peers[ae.strip()] = Peer(ae.strip(), host.strip("[]"), int(port))
    return peers


def _describe(error: ErrorDetails) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{ENV_PREFIX}{field.upper()}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; ``overrides`` win (CLI flags).

    Raises :class:`ConfigError` with one line per the first invalid variable.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"configuration error: {_describe(exc.errors()[0])}") from None


def prepare_data_dir(settings: Settings) -> Path:
    """Create the data dir and prove it is writable; ConfigError names RADIANT_DATA_DIR."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The data dir holds PHI: only the appliance's own user may enter it.
        if path.stat().st_uid == os.geteuid() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o700)
        probe = path / f".write-probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(
            f"configuration error: {ENV_PREFIX}DATA_DIR: {path} is not a writable directory "
            f"({reason})"
        ) from None
    return path.resolve()


def ensure_secret_key(settings: Settings) -> str:
    """The signing secret: the configured one, else the one generated into the data dir.

    The file is created once, 0600, and reused; a file readable by others is tightened to 0600.
    """
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.data_dir / SECRET_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise ConfigError(
                f"configuration error: {ENV_PREFIX}SECRET_KEY: {path} is damaged "
                "(shorter than 32 characters); restore it from backup"
            ) from None
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key
