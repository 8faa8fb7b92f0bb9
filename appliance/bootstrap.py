"""The composition root: settings, database, storage and the running services, built once.

``create_app`` (:mod:`appliance.app`) calls :func:`build_services` when it builds the web app,
:func:`start` and :func:`stop` from its lifespan; the screens and the routes then get the parts
by type (:mod:`appliance.dependencies`, :mod:`ui.runtime`). Commands that only need the
database call :func:`appliance.context.prepare` instead and load none of this.

This module sits in the top layer (with the web app, ``ui`` and the ``radiant`` command line): it
is the one place where the clinical core meets replication (``sync``) and the fleet
(``provisioning``).
"""

from __future__ import annotations

from ai.engines.base import Engine
from appliance import __version__, logs
from appliance.analysis import service as analysis
from appliance.config import Mode, Settings
from appliance.context import AppContext
from appliance.dicom.media import MediaWatcher
from appliance.dicom.receiver import Receiver
from appliance.dicom.recovery import recover
from appliance.dicomweb import http as dicomweb_http
from appliance.integrations.pacs import PacsRetrier
from appliance.jobs.runner import JobRunner
from appliance.reports import language
from appliance.services import Services
from appliance.studies.stability import StabilityMonitor
from appliance.studies.upload import discard_partial_uploads
from appliance.system.mode import effective_mode
from appliance.triage.notify import AlertWording, WebhookConfig, WebhookNotifier
from appliance.volumes import service as volumes
from provisioning.agent import FleetAgent, receiver_state
from provisioning.audit_checkpoints import Checkpointer
from sync import fetch
from sync.identity import device_id
from sync.manager import SyncManager

log = logs.get_logger("radiant.bootstrap")


def build_services(ctx: AppContext, *, tls_active: bool = False) -> Services:
    """Every long-lived part of a serving process, wired but not started (nothing listens,
    no thread runs): the job runner with its kinds, the stability monitor and its listeners,
    the receiver, the media watcher, PACS retries, replication, the fleet agent and the audit
    checkpoints."""
    settings: Settings = ctx.settings

    def engines() -> Engine:
        return analysis.current_engine(ctx)

    jobs = JobRunner(ctx.pool, lock_path=settings.data_dir / "jobs.lock")
    jobs.register(volumes.JOB_KIND, volumes.volume_job(ctx), concurrency=1, resumable=True)
    jobs.register(
        analysis.JOB_KIND, analysis.analysis_job(ctx, engines), concurrency=1, resumable=False
    )
    stability = StabilityMonitor(ctx.pool, settings.stable_age_s)
    stability.listeners.append(analysis.auto_analysis_listener(ctx, jobs.enqueue))
    stability.listeners.append(volumes.auto_build_listener(ctx, jobs.enqueue))
    stability.listeners.append(dicomweb_http.warm_metadata_listener(ctx))  # last: reads files
    receiver = Receiver(ctx)
    fetch.attach(ctx.store, settings, ctx.pool)  # storage fetches evicted files back through it
    sync_manager = SyncManager(ctx)
    fleet_agent = FleetAgent(
        ctx,
        receiver_state=lambda: receiver_state(receiver.status()),
        on_mode_change=sync_manager.wake,
    )
    return Services(
        ctx=ctx,
        jobs=jobs,
        stability=stability,
        receiver=receiver,
        media_watcher=MediaWatcher(settings.media_root_paths, exclude=[settings.data_dir]),
        pacs_retrier=PacsRetrier(ctx.pool, ctx.store, settings),
        sync=sync_manager,
        fleet=fleet_agent,
        checkpoints=Checkpointer(settings, ctx.pool, settings.audit_checkpoint_rows),
        engines=engines,
        tls_active=tls_active,
        notifier=_notifier(ctx),
    )


def alert_wording(code: str) -> AlertWording:
    """The critical alert's words in report language ``code`` (the report catalog)."""
    lang = language.checked(code)
    return AlertWording(
        tag={"en": "en-US", "fr": "fr-FR"}[lang],
        text=language.text(lang, "alert.text"),
        reasons=language.text(lang, "alert.reasons"),
        disclaimer=language.text(lang, "alert.disclaimer"),
        imaging=language.text(lang, "alert.imaging"),
    )


def _notifier(ctx: AppContext) -> WebhookNotifier | None:
    """The critical alert webhook (RADIANT_TRIAGE_WEBHOOK_*): posts only while online."""
    settings = ctx.settings
    if not settings.triage_webhook_url or settings.triage_webhook_secret is None:
        return None
    config = WebhookConfig(
        url=settings.triage_webhook_url,
        secret=settings.triage_webhook_secret.get_secret_value().encode(),
        sender=device_id(settings),
        max_age_s=float(settings.triage_webhook_max_age_s),
        wording=alert_wording(settings.report_language),
    )
    return WebhookNotifier(
        ctx.pool, config, lambda: effective_mode(ctx.pool.get(), settings) == Mode.ONLINE
    )


def start(services: Services, *, with_receiver: bool = True) -> None:
    """Recover from a crash, then start the services in the order that keeps data safe:
    nothing may arrive while recovery runs, jobs a crash left running are settled before new
    ones are claimed."""
    ctx = services.ctx
    recover(ctx)
    discard_partial_uploads(ctx.settings)
    services.jobs.start()  # re-queues or fails the jobs a crash left running
    analysis.reconcile(ctx.pool.get())  # analyses of jobs a crash failed: failed too
    services.stability.start()
    services.media_watcher.start()
    if with_receiver:
        services.receiver.start()  # after recover(): nothing may arrive while it runs
    services.pacs_retrier.start()  # re-sends report objects a PACS did not take
    services.sync.start()  # replication; does nothing until a remote is configured
    services.fleet.start()  # only on a provisioned box with a remote; talks only when online
    services.checkpoints.start()
    if services.notifier is not None:
        services.notifier.start()  # delivers queued critical alert notifications while online
    log.info("started", version=__version__, mode=ctx.settings.mode.value)


def stop(services: Services) -> None:
    """Stop in reverse: intake first, the audit checkpoint after the last writer, then the
    database connections."""
    services.receiver.stop()
    services.pacs_retrier.stop()
    services.media_watcher.stop()
    services.stability.stop()
    services.jobs.stop()
    services.fleet.stop()
    if services.notifier is not None:
        services.notifier.stop()
    services.sync.stop()
    services.checkpoints.stop()  # the shutdown checkpoint, after the last writer stopped
    services.ctx.pool.close_all()
    log.info("stopped")
