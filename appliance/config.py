"""Settings of the appliance: ``RADIANT_*`` environment variables (and an optional ``.env``).

Every field here is documented in ``.env.example``. Invalid values stop start-up with one line
naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import enum
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RADIANT_"
SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)
DATA_DIR_ENV_FILES = ("provisioned.env", "fleet.env")
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
    # HTTPS (appliance/tls.py): the site's certificate and key (PEM), else the box's own one.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_extra_names: str = ""
    # auto: HTTPS beyond loopback, plain HTTP on a loopback address; on: HTTPS always; off: never
    http_tls: Literal["auto", "on", "off"] = "auto"
    allow_plaintext_http: bool = False
    hsts_max_age_s: Annotated[int, Field(ge=0, le=2 * 31_536_000)] = 31_536_000
    http_csp: str = ""
    # Screen sessions (ui/session.py): absolute and idle limits.
    session_max_hours: Annotated[float, Field(gt=0, le=7 * 24)] = 12.0
    session_idle_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 30.0
    dicom_host: str = "0.0.0.0"  # noqa: S104 (the receiver serves the clinic's network)
    dicom_port: Port = 11112
    dicom_ae_title: str = "RADIANT"
    mode: Mode = Mode.OFFLINE
    secret_key: SecretStr | None = None
    site_name: str = "RadiantAI"
    access_token_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    login_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    login_lockout_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    login_client_delay_after: Annotated[int, Field(ge=1, le=1000)] = 10
    login_client_max_failures: Annotated[int, Field(ge=2, le=10_000)] = 30
    login_client_window_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    login_client_block_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    audit_checkpoint_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    db_busy_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    log_level: str = "info"
    dicom_overwrite: bool = False
    stable_age_s: Annotated[float, Field(ge=1, le=86_400)] = 30.0
    min_free_gb: Annotated[float, Field(ge=0, le=100_000)] = 5.0
    dicom_peers: str = ""
    dicom_allowed_aets: str = ""
    dicom_allowed_ips: str = ""
    # native: our own Upper Layer front end for storage, Q/R relayed to pynetdicom; pynetdicom: all
    dicom_frontend: Literal["native", "pynetdicom"] = "native"
    # Who may do what (issue 14): Q/R only for RADIANT_DICOM_PEERS (AE title and address);
    # storage open unless restricted; the called AE title must be ours.
    dicom_check_called_aet: bool = True
    dicom_store_peers_only: bool = False
    # Starvation limits (PS3.8 9.1.5 ARTIM; established associations only count to the limit)
    dicom_max_associations: Annotated[int, Field(ge=1, le=1000)] = 25
    dicom_artim_s: Annotated[float, Field(ge=0.1, le=600)] = 10.0
    dicom_idle_s: Annotated[float, Field(ge=0.1, le=86_400)] = 60.0
    dicom_max_pending: Annotated[int, Field(ge=1, le=10_000)] = 100
    dicom_max_pending_per_ip: Annotated[int, Field(ge=1, le=10_000)] = 10
    # Largest data set one C-STORE may carry (MiB); larger is answered 0xA700, audited
    dicom_max_object_mb: Annotated[int, Field(ge=1, le=1 << 20)] = 4096
    # DICOM TLS (PS3.15 Annex B): a second listener with the certificate of tls_cert/tls_key
    dicom_tls_port: Port | None = None
    # client certificates on the DICOM TLS port: none, peers (Q/R needs one), all (required)
    dicom_tls_client_ca: Path | None = None
    dicom_tls_verify_clients: Literal["none", "peers", "all"] = "none"
    media_roots: str = "/media,/run/media,/mnt"
    upload_max_mb: Annotated[int, Field(ge=1, le=100_000)] = 2048
    # DICOMweb (appliance/dicomweb): a user's reads of one series within this window are one
    # audited view, however many frames a viewer fetches
    dicomweb_audit_window_s: Annotated[float, Field(ge=1, le=86_400)] = 600.0
    # The unpacked OHIF viewer (`./just ohif`); unset: .cache/ohif/<version>/dist of the checkout
    ohif_dir: Path | None = None
    auto_volumes: bool = True
    # Reports and exports (appliance/export, appliance/integrations/pacs.py).
    report_page_size: Literal["A4", "LETTER"] = "A4"
    report_font_path: Path | None = None
    pacs_timeout_s: Annotated[float, Field(ge=1, le=600)] = 30.0
    pacs_retry_base_s: Annotated[float, Field(ge=0.01, le=86_400)] = 30.0
    pacs_retry_max_s: Annotated[float, Field(ge=0.01, le=7 * 86_400)] = 3600.0
    pacs_retry_poll_s: Annotated[float, Field(ge=0.01, le=3600)] = 5.0
    # MedGemma engines (ai/engines): the local engine, the online endpoint, retries.
    ai_engine: Literal["transformers", "openai", "none"] = "none"
    ai_model_dir: Path | None = None
    ai_endpoint: str | None = None
    ai_model: str = "google/medgemma-1.5-4b-it"
    ai_api_key: SecretStr | None = None
    ai_api_key_file: Path | None = None
    ai_vertex: bool = False
    ai_online_endpoint: str | None = None
    ai_online_model: str = "google/medgemma-1.5-4b-it"
    ai_online_api_key: SecretStr | None = None
    ai_online_api_key_file: Path | None = None
    ai_online_vertex: bool = False
    ai_online_fallback: bool = True
    # Radiographs with Burned In Annotation YES go to the cloud endpoint only when true (audited).
    ai_cloud_allow_burned_in: bool = False
    ai_timeout_s: Annotated[float, Field(ge=1, le=3600)] = 300.0
    ai_connect_timeout_s: Annotated[float, Field(ge=0.1, le=120)] = 10.0
    ai_max_attempts: Annotated[int, Field(ge=1, le=10)] = 4
    ai_retry_base_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    ai_retry_max_wait_s: Annotated[float, Field(ge=0, le=600)] = 60.0
    # Queue a primary analysis for every stable study (appliance/analysis).
    ai_auto: bool = False
    # Triage (ai/urgency.py): the site's critical findings list (JSON; the packaged one if unset).
    triage_critical_list: Path | None = None
    # Seconds after which an unacknowledged critical alert sounds again / comes back (ui/alerts).
    triage_realert_s: Annotated[int, Field(ge=30, le=3600)] = 180
    # Replication to the hospital's bucket (sync/): Litestream (database), rclone crypt (files).
    # Field order matters: the checks of a field see the fields declared above it.
    sync_remote: str = ""
    sync_bucket: str = ""
    sync_prefix: str = ""
    sync_endpoint: str | None = None
    sync_region: str = ""
    sync_access_key: SecretStr | None = None
    sync_secret_key: SecretStr | None = None
    sync_azure_account: str = ""
    sync_azure_key: SecretStr | None = None
    sync_encrypt: bool = True
    sync_interval_s: Annotated[float, Field(ge=0.1, le=3600)] = 10.0
    sync_stale_s: Annotated[float, Field(ge=1, le=86_400)] = 120.0
    sync_snapshot_hours: Annotated[float, Field(ge=0.01, le=24 * 31)] = 24.0
    retention_days: Annotated[int, Field(ge=0, le=36_500)] = 90
    evict_free_gb: Annotated[float, Field(ge=0, le=100_000)] = 20.0
    # First boot and the fleet (provisioning/): `radiant provision` writes its answers to
    # <data_dir>/provisioned.env, accepted fleet documents to <data_dir>/fleet.env.
    timezone: str = "UTC"
    language: Literal["en", "fr"] = "en"
    fleet_interval_s: Annotated[float, Field(ge=0.1, le=86_400)] = 60.0
    fleet_stale_s: Annotated[float, Field(ge=1, le=30 * 86_400)] = 600.0
    software_channel: str = "stable"
    # Apply pending database migrations when the appliance starts. The updater starts a new
    # release with this off, checks its /healthz, and only then runs `radiant migrate`.
    db_migrate_at_start: bool = True

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

    @field_validator(
        "dicom_tls_port", "tls_cert", "tls_key", "dicom_tls_client_ca", mode="before"
    )
    @classmethod
    def _blank_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dicom_tls_verify_clients")
    @classmethod
    def _verify_clients(cls, value: str, info: ValidationInfo) -> str:
        if value != "none" and info.data.get("dicom_tls_client_ca") is None:
            raise ValueError(
                f"needs {ENV_PREFIX}DICOM_TLS_CLIENT_CA (the CA of the peers' certificates)"
            )
        return value

    @field_validator(
        "ai_model_dir",
        "ai_endpoint",
        "ai_api_key",
        "ai_api_key_file",
        "ai_online_endpoint",
        "ai_online_api_key",
        "ai_online_api_key_file",
        "triage_critical_list",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("triage_critical_list")
    @classmethod
    def _critical_list(cls, value: Path | None) -> Path | None:
        if value is not None:
            from ai.urgency import CriticalListError, load_critical_list

            try:
                load_critical_list(value)
            except CriticalListError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("report_page_size", mode="before")
    @classmethod
    def _page_size(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("tls_key")
    @classmethod
    def _tls_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("tls_cert") is None):
            raise ValueError(f"set both {ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY, or neither")
        return value

    @field_validator("report_font_path", mode="before")
    @classmethod
    def _font_path(cls, value: Any) -> Any:
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
                f"set either {ENV_PREFIX}{key_field.upper()} or this file, not both"
            )
        return value

    @field_validator(
        "sync_remote",
        "sync_bucket",
        "sync_prefix",
        "sync_endpoint",
        "sync_region",
        "sync_access_key",
        "sync_secret_key",
        "sync_azure_account",
        "sync_azure_key",
        mode="before",
    )
    @classmethod
    def _sync_blank(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value and info.field_name in _SYNC_OPTIONAL:
                return None
        return value

    @field_validator("sync_remote")
    @classmethod
    def _sync_remote(cls, value: str) -> str:
        return check_sync_remote(value)

    @field_validator("sync_bucket")
    @classmethod
    def _sync_bucket(cls, value: str, info: ValidationInfo) -> str:
        return check_sync_bucket(info.data.get("sync_remote", ""), value)

    @field_validator("sync_prefix")
    @classmethod
    def _sync_prefix(cls, value: str) -> str:
        return check_sync_prefix(value) if value else value

    @field_validator("sync_endpoint")
    @classmethod
    def _sync_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL, e.g. https://s3.example.org")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: use the ACCESS_KEY/SECRET_KEY settings")
        return value.rstrip("/")

    @field_validator("sync_secret_key")
    @classmethod
    def _sync_s3_keys(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if info.data.get("sync_remote") == "s3":
            if info.data.get("sync_access_key") is None:
                raise ValueError(
                    f"{ENV_PREFIX}SYNC_ACCESS_KEY and this must be set when "
                    f"{ENV_PREFIX}SYNC_REMOTE=s3"
                )
            if value is None:
                raise ValueError(f"must be set when {ENV_PREFIX}SYNC_REMOTE=s3")
        return value

    @field_validator("sync_azure_key")
    @classmethod
    def _sync_azure_keys(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if info.data.get("sync_remote") == "azure":
            if not info.data.get("sync_azure_account"):
                raise ValueError(
                    f"{ENV_PREFIX}SYNC_AZURE_ACCOUNT and this must be set when "
                    f"{ENV_PREFIX}SYNC_REMOTE=azure"
                )
            if value is None:
                raise ValueError(f"must be set when {ENV_PREFIX}SYNC_REMOTE=azure")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("language", mode="before")
    @classmethod
    def _language(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("software_channel")
    @classmethod
    def _software_channel(cls, value: str) -> str:
        return check_software_channel(value)

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

    @property
    def ai_model_path(self) -> Path:
        """The local MedGemma checkpoint directory (default ``<data_dir>/models/...``)."""
        return self.ai_model_dir or self.data_dir / "models" / "medgemma-1.5-4b-it"


@dataclass(frozen=True)
class Peer:
    """A DICOM node the appliance may send to (C-MOVE destination, PACS)."""

    ae_title: str
    host: str
    port: int


def valid_ae_title(title: str) -> bool:
    """An AE value (PS3.5 6.2): 1-16 characters of the default repertoire, no backslash, no
    control characters, not only spaces (leading and trailing spaces are not significant)."""
    stripped = title.strip(" ")
    return 1 <= len(stripped) <= 16 and all(" " <= ch <= "~" and ch != "\\" for ch in stripped)


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
        if not valid_ae_title(ae.strip()):
            raise ValueError(f"peer {entry!r} has an invalid AE title (1-16 characters)")
        peers[ae.strip()] = Peer(ae.strip(), host.strip("[]"), int(port))
    return peers


SYNC_REMOTES = ("s3", "azure")
_SYNC_OPTIONAL = frozenset(
    {"sync_endpoint", "sync_access_key", "sync_secret_key", "sync_azure_key"}
)
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_AZURE_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_sync_remote(value: str) -> str:
    """``s3``, ``azure`` or empty (no replication)."""
    remote = value.strip().lower()
    if remote and remote not in SYNC_REMOTES:
        raise ValueError(f"unknown remote {value!r}: must be s3, azure or empty (no replication)")
    return remote


def check_sync_bucket(remote: str, value: str) -> str:
    """The bucket (S3) or container (Azure) name, required when a remote is set."""
    bucket = value.strip()
    if not remote:
        return bucket
    if not bucket:
        raise ValueError(f"must be set when {ENV_PREFIX}SYNC_REMOTE={remote} (the bucket's name)")
    pattern = _S3_BUCKET if remote == "s3" else _AZURE_CONTAINER
    if not pattern.fullmatch(bucket):
        kind = "an S3 bucket" if remote == "s3" else "an Azure container"
        raise ValueError(
            f"{bucket!r} is not {kind} name (3-63 lowercase letters, digits, hyphens"
            f"{', dots' if remote == 's3' else ''})"
        )
    return bucket


def check_sync_prefix(value: str) -> str:
    """Folder inside the bucket: ``/``-separated segments of letters, digits, ``._-``."""
    prefix = value.strip().strip("/")
    if not prefix or not all(_PREFIX_SEGMENT.fullmatch(s) for s in prefix.split("/")):
        raise ValueError(
            f"{value!r} is not a folder name (letters, digits, '.', '_', '-', separated by '/')"
        )
    return prefix


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
