"""Replication to the hospital's bucket (sync/): Litestream for the database, rclone crypt for
the files, retention and eviction."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from appliance.config.base import ENV_PREFIX

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


class ReplicationSettings(BaseSettings):
    """Field order matters: the checks of a field see the fields declared above it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

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
