"""Sign-in and sign-out, the current user, admin registration of users, and ending a user's
sessions."""

from __future__ import annotations

from typing import Annotated

import sqlite_utils
from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from appliance.audit.models import Actor
from appliance.auth import revocation, service, throttle
from appliance.auth.access import Allow, Public, bearer
from appliance.auth.models import Role, Token, UserCreate, UserOut
from appliance.config import Settings
from appliance.dependencies import client_address, get_db, get_settings, request_id
from appliance.errors import NotFound

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/token", response_model=Token, dependencies=[Depends(Public())])
def token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Token:
    """OAuth2 password flow: a short-lived bearer token. Repeated failures lock the account."""
    user = service.authenticate(
        db,
        form.username,
        form.password,
        client=client_address(request),
        request_id=request_id(request),
        policy=throttle.policy(settings),
    )
    access, lifetime = service.issue_token(
        user, request.app.state.jwt_key, settings.access_token_minutes
    )
    return Token(access_token=access, expires_in=lifetime)


@router.get("/me", response_model=UserOut)
def me(
    actor: Annotated[Actor, Depends(Allow())],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
) -> UserOut:
    """The signed-in user."""
    assert actor.user_id is not None
    user = service.get_user(db, actor.user_id)
    if user is None:
        raise NotFound("user not found")
    return user


@router.post("/register", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def register(
    body: UserCreate,
    actor: Annotated[Actor, Depends(Allow(Role.ADMIN))],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
) -> UserOut:
    """Create a user (admin only)."""
    return service.create_user(db, body, actor)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(
    request: Request,
    actor: Annotated[Actor, Depends(Allow())],
    token: Annotated[str | None, Depends(bearer)],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
) -> None:
    """Sign out: the bearer token of this request is refused from now on (audited
    ``auth.logout``)."""
    assert token is not None  # Allow() answered 401 without one
    claims = service.token_claims(token, request.app.state.jwt_key)
    revocation.revoke_token(db, claims, actor)


@router.post("/users/{user_id}/revoke-sessions", status_code=status.HTTP_204_NO_CONTENT)
def revoke_sessions(
    user_id: str,
    actor: Annotated[Actor, Depends(Allow())],
    db: Annotated[sqlite_utils.Database, Depends(get_db)],
) -> None:
    """End every bearer token and screen session of the account (an administrator for anyone,
    a user for themselves, e.g. after losing a device; audited ``user.sessions_revoke``).
    Disabling an account does the same."""
    revocation.revoke_sessions(db, user_id, actor)
