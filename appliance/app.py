"""``create_app()``: the FastAPI app with its routers, the NiceGUI screen and the lifespan.

The services it serves come from the composition root (:mod:`appliance.bootstrap`); the
database, storage and keys from :func:`appliance.context.prepare`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from appliance import __version__, bootstrap, logs, problems, tls
from appliance.analysis.routes import router as analysis_router
from appliance.audit.routes import router as audit_router
from appliance.auth.access import Public, check_guarded
from appliance.auth.routes import router as auth_router
from appliance.config import ConfigError, Settings, load_settings
from appliance.context import prepare
from appliance.dicomweb.routes import router as dicomweb_router
from appliance.dicomweb.routes import uri_router as wado_uri_router
from appliance.errors import NotFound
from appliance.export.routes import router as export_router
from appliance.jobs.routes import router as jobs_router
from appliance.patients.routes import router as patients_router
from appliance.reports.routes import router as reports_router
from appliance.studies.routes import router as studies_router
from appliance.system.routes import router as system_router
from appliance.triage.routes import router as triage_router
from appliance.volumes.routes import router as volumes_router
from appliance.web_security import SecurityHeaders
from sync.routes import router as sync_router

log = logs.get_logger("radiant.app")


def _tls_active(settings: Settings) -> bool:
    """Whether ``radiant serve`` listens with TLS under these settings."""
    try:
        return tls.http_certificate(settings) is not None
    except (ConfigError, tls.CertificateError):
        return False


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods the app's OpenAPI document declares for the request's path (none: unknown)."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def create_app(
    settings: Settings | None = None, *, with_ui: bool = True, with_receiver: bool = True
) -> FastAPI:
    """Build the appliance app. ``with_ui=False`` leaves out the NiceGUI screen (API tests);
    ``with_receiver=False`` does not listen for DICOM (tests using the default port)."""
    settings = settings or load_settings()
    logs.configure(settings.log_level)
    ctx = prepare(settings)
    services = bootstrap.build_services(ctx, tls_active=_tls_active(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bootstrap.start(services, with_receiver=with_receiver)
        try:
            yield
        finally:
            bootstrap.stop(services)

    app = FastAPI(
        title="RadiantAI appliance",
        version=__version__,
        description="Radiology decision-support appliance. AI output is preliminary and "
        "UNVERIFIED until a radiologist signs the report.",
        lifespan=lifespan,
    )
    app.state.services = services  # read by type: appliance.dependencies, ui.runtime
    app.state.ctx = ctx
    app.state.jwt_key = ctx.keys.jwt
    problems.install(app)

    for router in (
        system_router,
        auth_router,
        patients_router,
        studies_router,
        volumes_router,
        jobs_router,
        analysis_router,
        triage_router,
        reports_router,
        export_router,
        sync_router,
        audit_router,
        dicomweb_router,
        wado_uri_router,
    ):
        app.include_router(router)

    @app.api_route(
        "/api/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
        dependencies=[Depends(Public())],
    )
    def api_not_found(request: Request) -> None:
        """Unknown API paths answer a problem document, not the screen's HTML; a known path
        with an undeclared method answers 405 with ``Allow`` (RFC 9110 15.5.6)."""
        allowed = allowed_methods(app, request)
        if allowed:
            raise StarletteHTTPException(
                405,
                f"{request.method} is not allowed on {request.url.path}",
                headers={"Allow": ", ".join(allowed)},
            )
        raise NotFound(f"no API endpoint at {request.url.path}")

    check_guarded(app)
    if with_ui:
        from ui.mount import mount

        mount(app, services)
    # Added last, so it wraps everything, the screen's session cookie included.
    app.add_middleware(
        SecurityHeaders, csp=settings.http_csp, hsts_max_age_s=settings.hsts_max_age_s
    )
    return app
