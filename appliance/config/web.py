"""The screen and the API: listening address, HTTPS (appliance/tls.py), sessions and sign-in
limits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from appliance.config.base import ENV_PREFIX, Port, blank_is_unset


def check_host(value: str) -> str:
    if not value.strip() or any(ch.isspace() for ch in value.strip()):
        raise ValueError("must be a host name or IP address")
    return value.strip()


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

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
    access_token_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    login_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    login_lockout_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    login_client_delay_after: Annotated[int, Field(ge=1, le=1000)] = 10
    login_client_max_failures: Annotated[int, Field(ge=2, le=10_000)] = 30
    login_client_window_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    login_client_block_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    audit_checkpoint_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    # The unpacked OHIF viewer (`./just ohif`); unset: .cache/ohif/<version>/dist of the checkout
    ohif_dir: Path | None = None
    upload_max_mb: Annotated[int, Field(ge=1, le=100_000)] = 2048

    @field_validator("http_host")
    @classmethod
    def _web_host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("tls_cert", "tls_key", mode="before")
    @classmethod
    def _web_blank_none(cls, value: Any) -> Any:
        return blank_is_unset(value)

    @field_validator("tls_key")
    @classmethod
    def _web_tls_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("tls_cert") is None):
            raise ValueError(f"set both {ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY, or neither")
        return value
