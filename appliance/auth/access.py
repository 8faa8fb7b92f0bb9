"""Per-route role checks: every API route declares the roles it allows with :class:`Allow`.

``Depends(Allow(Role.ADMIN, ...))`` answers 401 without a valid token and 403 for a role not in
the list, and yields the caller as an audit :class:`~appliance.audit.models.Actor`.
:func:`check_guarded` refuses to build an app with an API route that declares nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, cast

import sqlite_utils
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from starlette.routing import BaseRoute

from appliance.audit.models import Actor
from appliance.auth import service
from appliance.auth.models import ALL_ROLES, Role, UserOut
from appliance.dependencies import client_address, get_db, request_id
from appliance.errors import Forbidden, Unauthorized

bearer = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


class Allow:
    """Dependency allowing the given roles (all roles when none are given)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles) if roles else ALL_ROLES

    def __repr__(self) -> str:
        return f"Allow({', '.join(sorted(r.value for r in self.roles))})"

    def __call__(
        self,
        request: Request,
        token: Annotated[str | None, Depends(bearer)],
        db: Annotated[sqlite_utils.Database, Depends(get_db)],
    ) -> Actor:
        user = self._user(request, token, db)
        if user.role not in self.roles:
            raise Forbidden(
                f"the {user.role.value} role may not do this; allowed: "
                f"{', '.join(sorted(r.value for r in self.roles))}"
            )
        actor = Actor(
            name=user.username,
            role=user.role.value,
            user_id=user.id,
            client=client_address(request),
            request_id=request_id(request),
        )
        request.state.actor = actor
        return actor

    def _user(self, request: Request, token: str | None, db: sqlite_utils.Database) -> UserOut:
        if not token:
            raise Unauthorized("sign in first: this needs a bearer access token")
        secret = cast(str, request.app.state.jwt_key)
        return service.user_from_token(db, token, secret)


SessionResolver = Callable[[Request], str | None]
"""Returns the user id of the screen session a request carries (or None); the screen layer
installs one on ``app.state.session_user`` so the API never imports the UI."""

SAFE_METHODS = frozenset({"GET", "HEAD"})


class AllowWithSession(Allow):
    """Like :class:`Allow`, and a screen session cookie is accepted instead of a bearer token
    for reads (GET/HEAD only: a write with only a cookie is refused, so a cross-site form can
    never store anything even if a browser ignored SameSite)."""

    def _user(self, request: Request, token: str | None, db: sqlite_utils.Database) -> UserOut:
        if token:
            return super()._user(request, token, db)
        resolver = cast(SessionResolver | None, getattr(request.app.state, "session_user", None))
        if resolver is not None and request.method in SAFE_METHODS:
            user_id = resolver(request)
            if user_id:
                user = service.get_user(db, user_id)
                if user is not None and user.active:
                    return user
        raise Unauthorized("sign in first: this needs a bearer access token or a screen session")


class Public:
    """Marks a route that needs no sign-in (health, token endpoint)."""

    def __call__(self) -> None:
        return None


def route_guard(route: APIRoute) -> Allow | Public | None:
    for dependant in route.dependant.dependencies:
        if isinstance(dependant.call, Allow | Public):
            return dependant.call
    return None


def iter_api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, descending into included routers (FastAPI keeps those as entries that
    point at the original router)."""
    for _, route in iter_api_paths(routes):
        yield route


def iter_api_paths(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute with the path it is published at: a router included into another one
    keeps its own paths, and the prefixes of the includes above it are added here."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            yield from iter_api_paths(original.routes, prefix + str(getattr(context, "prefix", "")))


def check_guarded(app: FastAPI) -> None:
    """Every API route must declare Allow(...) or Public(); raises RuntimeError otherwise."""
    routes = list(iter_api_routes(app.router.routes))
    if not routes:
        raise RuntimeError("no API routes found: the route walk no longer matches FastAPI")
    bare = [
        f"{sorted(route.methods or ())} {route.path}"
        for route in routes
        if route_guard(route) is None
    ]
    if bare:
        raise RuntimeError(f"routes without a declared role policy: {', '.join(bare)}")
