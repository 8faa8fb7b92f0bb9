"""Schemas for users, roles and tokens."""

from __future__ import annotations

import enum
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
MIN_PASSWORD = 10


class Role(enum.StrEnum):
    """What a user may do. Only a radiologist signs; only an admin manages the box."""

    ADMIN = "admin"
    RADIOLOGIST = "radiologist"
    TECHNICIAN = "technician"
    VIEWER = "viewer"


ALL_ROLES = frozenset(Role)


def check_username(value: str) -> str:
    if not USERNAME.match(value):
        raise ValueError(
            "must be 2-64 characters: letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    return value


def check_password(value: str) -> str:
    if len(value) < MIN_PASSWORD:
        raise ValueError(f"must be at least {MIN_PASSWORD} characters")
    if len(value) > 256:
        raise ValueError("must be at most 256 characters")
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("must not contain control characters")
    return value


# The validators' rules, also stated in the OpenAPI document so that clients see them.
_USERNAME_SCHEMA: JsonDict = {"pattern": USERNAME.pattern}
_PASSWORD_SCHEMA: JsonDict = {
    "minLength": MIN_PASSWORD,
    "maxLength": 256,
    "pattern": "^[^\\x00-\\x1f]*$",
}


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(json_schema_extra=_USERNAME_SCHEMA)
    password: str = Field(repr=False, json_schema_extra=_PASSWORD_SCHEMA)
    role: Role
    full_name: str | None = Field(default=None, max_length=128)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        return check_username(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return check_password(value)


class UserOut(BaseModel):
    id: str
    username: str
    full_name: str | None
    role: Role
    active: bool
    created_at: str
    last_login_at: str | None


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type)
    expires_in: int
