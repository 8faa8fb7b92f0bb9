"""``create_app()``: the FastAPI app with its routers, the NiceGUI screen and the lifespan."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from appliance import __version__, logs, problems, tls
from appliance.analysis import service as analysis
from appliance.analysis.routes import router as analysis_router
from appliance.audit.routes import router as audit_router
from appliance.auth.access import Public, check_guarded
from appliance.auth.routes import router as auth_router
from appliance.config import (
    ConfigError,
    Settings,
    ensure_secret_key,
    load_settings,
    prepare_data_dir,
)
from appliance.context import AppContext
from appliance.db.connection import ConnectionPool
from appliance.db.migrate import apply_migrations
from appliance.dicom.media import MediaWatcher
from appliance.dicom.receiver import Receiver
from appliance.dicom.recovery import recover
from appliance.dicomweb.routes import router as dicomweb_router
from appliance.dicomweb.routes import uri_router as wado_uri_router
from appliance.errors import NotFound
from appliance.export.routes import router as export_router
from appliance.integrations.pacs import PacsRetrier
from appliance.jobs.routes import router as jobs_router
from appliance.jobs.runner import JobRunner
from appliance.patients.routes import router as patients_router
from appliance.reports.routes import router as reports_router
from appliance.studies.routes import router as studies_router
from appliance.studies.stability import StabilityMonitor
from appliance.studies.upload import discard_partial_uploads
from appliance.system.routes import router as system_router
from appliance.triage.routes import router as triage_router
from appliance.volumes import service as volumes
from appliance.volumes.routes import router as volumes_router
from appliance.web_security import SecurityHeaders
from provisioning.agent import FleetAgent, receiver_state
from provisioning.audit_checkpoints import Checkpointer
from sync.manager import SyncManager
from sync.routes import router as sync_router

log = logs.get_logger("radiant.app")


def prepare(settings: Settings) -> AppContext:
    """Data dir, secret key, schema and stores: everything that must hold before serving."""
    prepare_data_dir(settings)
    secret = ensure_secret_key(settings)
    pool = ConnectionPool(settings.db_path, settings.db_busy_timeout_ms)
    if settings.db_migrate_at_start:
        applied = apply_migrations(pool.get())
        if applied:
            log.info("migrations_applied", versions=applied)
    else:
        log.info("migrations_held", reason="RADIANT_DB_MIGRATE_AT_START=false")
    return AppContext.build(settings, pool, secret)


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recover(ctx)
        discard_partial_uploads(settings)
        jobs = JobRunner(ctx.pool, lock_path=settings.data_dir / "jobs.lock")
        jobs.register(volumes.JOB_KIND, volumes.volume_job(ctx), concurrency=1, resumable=True)
        jobs.register(analysis.JOB_KIND, analysis.analysis_job(ctx), concurrency=1, resumable=False)
        jobs.start()  # re-queues or fails the jobs a crash left running
        analysis.reconcile(ctx.pool.get())  # analyses of jobs a crash failed: failed too
        app.state.jobs = jobs
        stability = StabilityMonitor(ctx.pool, settings.stable_age_s)
        stability.listeners.append(analysis.auto_analysis_listener(ctx, jobs.enqueue))
        stability.listeners.append(volumes.auto_build_listener(ctx, jobs.enqueue))
        stability.start()
        app.state.stability = stability
        media_watcher = MediaWatcher(settings.media_root_paths, exclude=[settings.data_dir])
        media_watcher.start()
        app.state.media_watcher = media_watcher
        receiver = Receiver(ctx)
        if with_receiver:
            receiver.start()  # after recover(): nothing may arrive while it runs
        app.state.receiver = receiver
        pacs_retrier = PacsRetrier(ctx.pool, ctx.store, settings)
        pacs_retrier.start()  # re-sends report objects a PACS did not take
        app.state.pacs_retrier = pacs_retrier
        sync_manager = SyncManager(ctx)
        sync_manager.start()  # replication; does nothing until a remote is configured
        app.state.sync = sync_manager
        fleet_agent = FleetAgent(
            ctx,
            receiver_state=lambda: receiver_state(receiver.status()),
            on_mode_change=sync_manager.wake,
        )
        fleet_agent.start()  # only on a provisioned box with a remote; talks only when online
        app.state.fleet = fleet_agent
        checkpointer = Checkpointer(settings, ctx.pool, settings.audit_checkpoint_rows)
        checkpointer.start()
        log.info("started", version=__version__, mode=settings.mode.value)
        try:
            yield
        finally:
            receiver.stop()
            pacs_retrier.stop()
            media_watcher.stop()
            stability.stop()
            jobs.stop()
            fleet_agent.stop()
            sync_manager.stop()
            checkpointer.stop()  # the shutdown checkpoint, after the last writer stopped
            ctx.pool.close_all()
            log.info("stopped")

    app = FastAPI(
        title="RadiantAI appliance",
        version=__version__,
        description="Radiology decision-support appliance. AI output is preliminary and "
        "UNVERIFIED until a radiologist signs the report.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.db_pool = ctx.pool
    app.state.jwt_key = ctx.keys.jwt
    app.state.tls_active = _tls_active(settings)
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

        mount(app, settings, ctx.keys.session)
    # Added last, so it wraps everything, the screen's session cookie included.
    app.add_middleware(
        SecurityHeaders, csp=settings.http_csp, hsts_max_age_s=settings.hsts_max_age_s
    )
    return app
