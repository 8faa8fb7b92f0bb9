"""System (administrators): the offline/online switch with what it changes, sync status, AI
engine, disk, DICOM receiver, users and the audit log."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nicegui import ui

from appliance import tls
from appliance.analysis import service as analysis_service
from appliance.audit.models import Actor
from appliance.auth import revocation, throttle
from appliance.auth import service as auth
from appliance.auth.models import Role, UserCreate, UserOut
from appliance.config import Mode, Settings
from appliance.db.rows import utc_now
from appliance.dicom.receiver import ReceiverStatus
from sync import mode as sync_mode
from sync import status as sync_status
from sync.models import SyncStatus
from ui import components, format, i18n, runtime, session
from ui.pages import audit_log, go_online, system_turnaround
from ui.pages.importing import addresses


def register() -> None:
    @ui.page("/system")
    def system_page() -> components.Guarded:
        user = components.guard_page(session.ADMIN)
        if not isinstance(user, session.SessionUser):
            return user
        build(user)
        return None


@dataclass
class Facts:
    mode: Mode
    sync: SyncStatus | None
    sync_error: str | None
    engine: dict[str, Any]
    disk_total: int
    disk_free: int
    receiver: ReceiverStatus | None
    addresses: list[str]
    users: list[UserOut]
    tls_active: bool
    tls_fingerprint: str | None
    locked: list[throttle.LockedPair]
    blocked: list[tuple[str, str]]
    http_port: int = 8000


def _facts() -> Facts:
    rt = runtime.get()
    db = rt.db()
    try:
        found: SyncStatus | None = sync_status.compute(rt.settings, db)
        error = None
    except Exception as exc:
        found, error = None, str(exc)
    usage = shutil.disk_usage(rt.settings.data_dir)
    return Facts(
        mode=sync_mode.effective_mode(db, rt.settings),
        sync=found,
        sync_error=error,
        engine=analysis_service.engine_info(rt.settings, db),
        disk_total=usage.total,
        disk_free=usage.free,
        receiver=rt.services.receiver.status(),
        addresses=addresses(rt.settings.dicom_host),
        users=auth.list_users(db),
        tls_active=rt.services.tls_active,
        tls_fingerprint=_fingerprint(rt.settings),
        locked=throttle.locked(db, utc_now()),
        blocked=throttle.blocked_clients(db, utc_now()),
        http_port=rt.settings.http_port,
    )


def _fingerprint(settings: Settings) -> str | None:
    paths = tls.certificate_paths(settings)
    return tls.fingerprint_sha256(paths[0]) if paths else None


def _switch(mode: Mode, user: session.SessionUser) -> Mode:
    rt = runtime.get()
    change = sync_mode.set_mode(rt.db(), rt.settings, mode, user.actor)
    rt.services.sync.wake()
    return change.mode


def _gb(size: float) -> str:
    return format.gigabytes(size)


def build(user: session.SessionUser) -> None:
    with components.frame(user, "nav.system"):
        ui.label(i18n.t("system.title")).classes("text-h4")
        holder = ui.column().classes("w-full gap-3")

    async def load() -> None:
        current = session.require(session.ADMIN)
        if current is None:
            components.refuse()
            return
        try:
            facts = await runtime.off_loop(_facts)
        except Exception as exc:
            components.notify_error(exc)
            return
        holder.clear()
        with holder:
            _cards(current, facts, load)

    ui.timer(0.01, load, once=True)


def _cards(user: session.SessionUser, facts: Facts, reload: Any) -> None:
    with ui.row().classes("w-full gap-3 items-stretch"):
        with ui.card().classes("radiant-card col q-pa-md gap-2"):
            ui.label(i18n.t("system.mode")).classes("text-h6")
            ui.label(i18n.t("status.mode", mode=i18n.t(f"mode.{facts.mode.value}"))).classes(
                "text-h5").props("data-testid=system-mode").mark("system-mode")
            ui.label(i18n.t(f"system.mode_effect.{facts.mode.value}")).classes("text-body1")
            other = Mode.ONLINE if facts.mode == Mode.OFFLINE else Mode.OFFLINE
            ui.label(i18n.t(f"system.mode_switch_effect.{other.value}")).classes(
                "text-body2 radiant-muted")

            async def switch() -> None:
                current = session.require(session.ADMIN)
                if current is None:
                    components.refuse()
                    return
                if other is Mode.ONLINE:  # checked first, then confirmed (ui/pages/go_online)
                    await go_online.check_and_confirm(current)
                    return
                try:
                    await runtime.off_loop(lambda: _switch(other, current))
                except Exception as exc:
                    components.notify_error(exc)
                    return
                ui.notify(i18n.t("system.mode_changed", mode=i18n.t(f"mode.{other.value}")),
                          type="positive")
                ui.navigate.reload()

            ui.button(i18n.t(f"system.go_{other.value}"),
                      icon="cloud" if other == Mode.ONLINE else "cloud_off",
                      on_click=switch).props(
                "no-caps size=lg color=primary data-testid=switch-mode").mark("switch-mode")
        with ui.card().classes("radiant-card col q-pa-md gap-1"):
            ui.label(i18n.t("system.sync")).classes("text-h6")
            found = facts.sync
            if found is None:
                ui.label(i18n.t("system.sync_error", error=facts.sync_error or "-")).classes(
                    "radiant-error")
            elif not found.configured:
                ui.label(i18n.t("status.sync_off")).classes("text-body1")
            else:
                lag = found.database.lag_s
                ui.label(i18n.t("system.sync_lag",
                                lag="-" if lag is None else f"{lag:.0f}")).classes("text-body1")
                objects = found.objects
                ui.label(i18n.t("system.sync_files", pending=objects.pending,
                                failed=objects.failed, done=objects.done)).classes("text-body1")
                ui.label(i18n.t("system.sync_reach",
                                state=found.reachability or "-")).classes("text-body1")
                if found.last_error:
                    ui.label(i18n.t("system.sync_last_error", error=found.last_error)).classes(
                        "radiant-error")
        with ui.card().classes("radiant-card col q-pa-md gap-1"):
            ui.label(i18n.t("system.ai")).classes("text-h6")
            engine = facts.engine
            name = str(engine.get("name") or "none")
            ui.label(i18n.t("system.ai_engine", engine=name)).classes("text-body1")
            for key in ("model", "endpoint", "route", "device", "memory", "online_model",
                        "online_endpoint"):
                if engine.get(key):
                    ui.label(f"{key}: {engine[key]}").classes("text-body2 radiant-muted")
            if name == "none":
                ui.label(i18n.t("analysis.no_engine_next")).classes("text-body2")
    with ui.row().classes("w-full gap-3 items-stretch"):
        with ui.card().classes("radiant-card col q-pa-md gap-1"):
            ui.label(i18n.t("system.disk")).classes("text-h6")
            used = facts.disk_total - facts.disk_free
            ui.label(i18n.t("system.disk_line", free=_gb(facts.disk_free),
                            total=_gb(facts.disk_total))).classes("text-body1")
            ui.linear_progress(value=used / facts.disk_total if facts.disk_total else 0,
                               show_value=False, size="20px").props("rounded color=orange-6")
        with ui.card().classes("radiant-card col q-pa-md gap-1"):
            ui.label(i18n.t("system.receiver")).classes("text-h6")
            receiver = facts.receiver
            if receiver is None:
                ui.label(i18n.t("import.not_listening", reason="-")).classes("radiant-error")
            else:
                ui.label(i18n.t("import.ae_title", value=receiver.ae_title)).classes("text-body1")
                ui.label(i18n.t("import.port", value=receiver.port)).classes("text-body1")
                ui.label(i18n.t("import.ip", value=", ".join(facts.addresses))).classes(
                    "text-body1")
                if receiver.listening:
                    ui.label(i18n.t("import.listening")).classes("radiant-ok")
                else:
                    ui.label(i18n.t("import.not_listening",
                                    reason=receiver.error or "-")).classes("radiant-error")
                ui.label(i18n.t("system.receiver_counts", stored=receiver.stored,
                                duplicates=receiver.duplicates,
                                quarantined=receiver.quarantined)).classes("text-body2")
        with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
            ui.label(i18n.t("system.dicomweb")).classes("text-h6")
            for address in facts.addresses:
                scheme = "https" if facts.tls_active else "http"
                url = f"{scheme}://{address}:{facts.http_port}/dicom-web"
                ui.label(i18n.t("system.dicomweb_url", url=url)).classes("text-body1").props(
                    "data-testid=dicomweb-url")
            ui.label(i18n.t("system.dicomweb_note")).classes("text-body2 radiant-muted")
    system_turnaround.card()
    _security(facts, reload)
    _users(user, facts.users, reload)
    audit_log.viewer(user)


def _security(facts: Facts, reload: Any) -> None:
    """HTTPS state and certificate fingerprint (to pin), locked sign-ins with their unlock."""
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        ui.label(i18n.t("system.security")).classes("text-h6")
        state = "system.https_on" if facts.tls_active else "system.https_off"
        ui.label(i18n.t(state)).classes("radiant-ok" if facts.tls_active else "radiant-error")
        ui.label(i18n.t("system.tls_fingerprint", value=facts.tls_fingerprint or "-")).classes(
            "text-body2"
        ).style("overflow-wrap: anywhere").props("data-testid=tls-fingerprint").mark(
            "tls-fingerprint"
        )
        if not facts.locked and not facts.blocked:
            ui.label(i18n.t("system.no_locks")).classes("text-body2 radiant-muted")
        for pair in facts.locked:
            with ui.row().classes("w-full items-center gap-3").props("data-testid=locked-row"):
                ui.label(
                    i18n.t("system.locked_pair", user=pair.username, address=pair.client)
                ).classes("text-body1")
                ui.space()

                async def unlock(name: str = pair.username) -> None:
                    current = session.require(session.ADMIN)
                    if current is None:
                        components.refuse()
                        return
                    try:
                        await runtime.off_loop(
                            lambda: auth.unlock(runtime.get().db(), name, current.actor)
                        )
                    except Exception as exc:
                        components.notify_error(exc)
                        return
                    ui.notify(i18n.t("system.unlocked", user=name), type="positive")
                    await reload()

                ui.button(i18n.t("system.unlock"), icon="lock_open", on_click=unlock).props(
                    "no-caps outline data-testid=unlock"
                )
        for address, until in facts.blocked:
            ui.label(i18n.t("system.blocked_address", address=address, until=until)).classes(
                "text-body1 radiant-error"
            )


async def _as_admin(work: Callable[[Actor], object]) -> bool:
    """Run ``work`` off the event loop as the signed-in administrator; False when refused or
    failed (said on the screen)."""
    current = session.require(session.ADMIN)
    if current is None:
        components.refuse()
        return False
    try:
        await runtime.off_loop(lambda: work(current.actor))
    except Exception as exc:
        components.notify_error(exc)
        return False
    return True


def _users(user: session.SessionUser, users: list[UserOut], reload: Any) -> None:
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        ui.label(i18n.t("system.users")).classes("text-h6")
        for account in users:
            with ui.row().classes("w-full items-center gap-3").props(
                    "data-testid=user-row").mark("user-row"):
                ui.label(account.username).classes("text-body1 text-weight-bold")
                ui.label(i18n.t(f"role.{account.role.value}")).classes("text-body1")
                ui.label(i18n.t("system.active" if account.active else "system.disabled")).classes(
                    "radiant-ok" if account.active else "radiant-error")
                ui.space()

                async def toggle(target: UserOut = account) -> None:
                    if await _as_admin(lambda actor: auth.set_active(
                            runtime.get().db(), target.id, not target.active, actor)):
                        await reload()

                ui.button(i18n.t("system.disable" if account.active else "system.enable"),
                          on_click=toggle).props("no-caps outline")

                async def end_sessions(target: UserOut = account) -> None:
                    if await _as_admin(lambda actor: revocation.revoke_sessions(
                            runtime.get().db(), target.id, actor)):
                        ui.notify(i18n.t("system.sessions_ended", user=target.username))

                ui.button(i18n.t("system.end_sessions"), on_click=end_sessions).props(
                    "no-caps outline data-testid=end-sessions").mark("end-sessions").tooltip(
                    i18n.t("system.end_sessions_hint"))
        ui.label(i18n.t("system.new_user")).classes("text-subtitle1 text-weight-bold")
        with ui.row().classes("w-full items-center gap-2"):
            username = ui.input(i18n.t("signin.username")).props("outlined").classes("w-48")
            full_name = ui.input(i18n.t("system.full_name")).props("outlined").classes("w-56")
            password = ui.input(i18n.t("signin.password"), password=True).props(
                "outlined").classes("w-56")
            role = ui.select({r.value: i18n.t(f"role.{r.value}") for r in Role},
                             value=Role.TECHNICIAN.value, label=i18n.t("system.role")).props(
                "outlined").classes("w-48")
        message = ui.label().classes("radiant-error").props("role=alert")

        async def create() -> None:
            current = session.require(session.ADMIN)
            if current is None:
                components.refuse()
                return
            message.set_text("")
            try:
                data = UserCreate(username=str(username.value or ""),
                                  password=str(password.value or ""), role=Role(role.value),
                                  full_name=str(full_name.value or "") or None)
            except ValueError as exc:
                errors: list[Any] = getattr(exc, "errors", list)()
                field = str(errors[0]["loc"][0]) if errors else "username"
                message.set_text(i18n.t(f"system.invalid_{field}"))
                return
            try:
                await runtime.off_loop(lambda: auth.create_user(runtime.get().db(), data,
                                                                current.actor))
            except Exception as exc:
                components.notify_error(exc)
                return
            ui.notify(i18n.t("system.user_created"), type="positive")
            await reload()

        ui.button(i18n.t("system.create_user"), icon="person_add", on_click=create).props(
            "no-caps size=lg color=primary data-testid=create-user")
