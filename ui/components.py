"""Shared pieces of every screen: the dark high-contrast theme, the page frame (header with
touch-sized navigation, status bar with mode, sync and disk), the AI decision-support banner,
status chips and plain-word error notices."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.responses import RedirectResponse
from nicegui import ui

from appliance import tls
from appliance.auth.models import Role
from appliance.errors import AppError
from sync import mode as sync_mode
from sync import status as sync_status
from ui import format, i18n, runtime, session

T = TypeVar("T")

# Touch first: every control at least 48x48 CSS px, large type, no hover-only affordances.
THEME_CSS = """
:root { --radiant-accent: #4fc3f7; }
body, .q-page, .nicegui-content { background: #0b0d10; color: #f2f4f8; font-size: 18px; }
.nicegui-content { padding: 12px 16px 88px 16px; max-width: 100vw; overflow-x: hidden; }
html, body { overflow-x: hidden; }
.q-btn { min-height: 48px; min-width: 48px; font-size: 17px; }
.q-btn.q-btn--round, .q-btn.q-btn--fab-mini { min-width: 48px; min-height: 48px; }
.q-field__control, .q-field__native { min-height: 52px; font-size: 18px; }
.q-checkbox, .q-toggle, .q-radio { min-height: 48px; min-width: 48px; }
.q-checkbox__inner, .q-radio__inner { min-width: 48px; min-height: 48px; font-size: 48px; }
.q-toggle__inner { min-width: 60px; min-height: 48px; font-size: 48px; }
.q-tab { min-height: 56px; min-width: 96px; font-size: 17px; }
.q-chip { font-size: 15px; }
.q-chip--clickable { min-height: 48px; min-width: 48px; }
.q-item.q-item--clickable { min-height: 56px; }
.q-slider { min-height: 48px; }
.q-slider__track-container--h { padding-top: 22px; padding-bottom: 22px; }
.q-field__append .q-icon { min-width: 48px; min-height: 48px; display: inline-flex;
                                  align-items: center; justify-content: center; }
.q-slider__thumb { width: 32px; height: 32px; }
.q-uploader { width: 100%; max-width: 100%; }
.q-uploader__header .q-btn { min-width: 48px; min-height: 48px; }
.radiant-header { background: #12161c; border-bottom: 2px solid #2a3340; }
.radiant-footer { background: #12161c; border-top: 2px solid #2a3340; color: #e6e9ef; }
.radiant-banner { background: #5c3b00; color: #ffe7b0; border: 2px solid #ffb300;
                  border-radius: 6px; padding: 8px 12px; font-weight: 600; }
.radiant-verified { background: #123d1c; color: #c8f0cd; border: 2px solid #66bb6a;
                    border-radius: 6px; padding: 8px 12px; font-weight: 600; }
.radiant-card { background: #151a21; border: 1px solid #2e3846; border-radius: 8px; }
.radiant-muted { color: #b8c0cc; }
.radiant-row { height: 48px; min-height: 48px; max-height: 48px; overflow: hidden;
  border-bottom: 1px solid #2e3846; cursor: pointer; }
.radiant-row .q-chip { margin: 0; flex: none; }
.radiant-error { color: #ff8a80; font-weight: 600; }
.radiant-ok { color: #a5d6a7; font-weight: 600; }
.radiant-viewport { position: relative; background: #000; overflow: hidden;
                    touch-action: none; user-select: none; }
.radiant-overlay { position: absolute; color: #fff; font-size: 15px; line-height: 1.3;
                   text-shadow: 0 0 3px #000, 0 0 3px #000; pointer-events: none; }
a.radiant-link { color: var(--radiant-accent); }
"""


def theme() -> None:
    """The theme of every page (dark mode, large fonts, touch-sized controls)."""
    ui.dark_mode(True)
    ui.add_css(THEME_CSS)
    ui.query("body").classes("radiant")
    plaintext_banner()


def plaintext_banner() -> None:
    """A red banner on every page while the screen answers plain HTTP beyond this machine
    (``RADIANT_ALLOW_PLAINTEXT_HTTP=true``): passwords and sessions cross the network in clear."""
    rt = runtime.get()
    if not tls.plaintext_exposed(rt.settings, rt.services.tls_active):
        return
    with ui.row().classes("w-full items-center no-wrap gap-2 bg-red-9 text-white q-px-md q-py-sm"):
        ui.icon("lock_open").classes("text-h6")
        ui.label(i18n.t("security.plaintext_banner")).classes("text-body1").props(
            "data-testid=plaintext-banner"
        ).mark("plaintext-banner")


def ai_banner() -> None:
    """The decision-support banner: wherever AI content is shown."""
    with ui.row().classes("radiant-banner w-full items-center no-wrap gap-2"):
        ui.icon("warning").classes("text-h6")
        ui.label(i18n.t("ai.banner")).classes("text-body1")


def verified_banner(name: str, when: str, amended: bool) -> None:
    """In place of the AI banner once a radiologist signed: who verified it and when."""
    with ui.row().classes("radiant-verified w-full items-center no-wrap gap-2").props(
            "data-testid=verified-banner").mark("verified-banner"):
        ui.icon("verified").classes("text-h6")
        text = i18n.t("report.verified_banner", name=name, when=when)
        if amended:
            text += " " + i18n.t("report.verified_amended")
        ui.label(text).classes("text-body1")


FLAG_REASONS = frozenset({
    "quotation", "history", "recommendation", "negation", "measurement",
    "definitive_negative", "sentence_flagged", "unhedged_statement", "reworded",
    "unit_not_recognised", "confidence_out_of_range",
})


def flag_words(reason: str, phrase: str | None, replacement: str | None) -> str:
    """One safety flag in plain words (``could not be hedged: states a diagnosis``)."""
    key = reason if reason in FLAG_REASONS else "other"
    return i18n.t(f"flag.{key}", phrase=phrase or "-", replacement=replacement or "-")


def safety_flags(flags: list[Any], marker: str) -> None:
    """The flags of one item, each on its own line beside the text it concerns."""
    for flag in flags:
        data = flag if isinstance(flag, dict) else flag.model_dump()
        reworded = data.get("reason") == "reworded"
        ui.label(flag_words(str(data.get("reason")), data.get("phrase"),
                            data.get("replacement"))).classes(
            "text-body2 " + ("radiant-muted" if reworded else "radiant-error")).props(
            "data-testid=safety-flag").mark(marker)


#: Service errors whose problem document carries a ``code`` the catalogs translate.
ERROR_CODES = frozenset({"report_stale", "report_signed"})


def notify_error(exc: Exception) -> None:
    """An error in plain words: the catalog's sentence for an AppError with a known ``code``,
    else the service's sentence for an AppError."""
    if not isinstance(exc, AppError):
        message = i18n.t("error.unexpected")
    elif exc.extra.get("code") in ERROR_CODES:
        message = i18n.t(f"error.{exc.extra['code']}")
    else:
        message = exc.detail
    ui.notify(message, type="negative", multi_line=True, close_button=i18n.t("action.close"))


def refuse() -> None:
    """An action the session's role may not take (or the session ended)."""
    ui.notify(i18n.t("auth.forbidden"), type="negative")


def chip(text: str, colour: str, icon: str | None = None, explain: str | None = None) -> None:
    """A status chip; with ``explain``, tapping it shows that one-line explanation."""
    made = ui.chip(text, color=colour, icon=icon, text_color="white").props("dense square")
    if explain:
        made.props("clickable data-testid=status-chip")
        # The tap opens the explanation only: it must not also reach a clickable parent (a
        # worklist row opens the study).
        made.on("click", js_handler="(event) => event.stopPropagation()")
        with made, ui.menu().props("data-testid=chip-explain"):
            ui.label(explain).classes("q-pa-md text-body1").style("max-width: 22rem")


URGENCY_COLOURS = {"critical": "red-9", "urgent": "amber-10"}


STUDY_COLOURS = {"receiving": "orange-9", "stable": "teal-8"}
REPORT_COLOURS = {"draft": "amber-9", "final": "green-8", "amended": "green-9"}


@dataclass
class StatusLine:
    mode: str
    sync_key: str
    sync_count: int
    free_gb: float
    used_percent: int
    disk_low: bool


def status_line() -> StatusLine:
    """Mode, sync and disk, read off the event loop (no translation here)."""
    rt = runtime.get()
    db = rt.db()
    mode = sync_mode.effective_mode(db, rt.settings)
    count = 0
    try:
        found = sync_status.compute(rt.settings, db)
        if not found.configured:
            key = "status.sync_off"
        elif found.objects.failed:
            key, count = "status.sync_failed", found.objects.failed
        else:
            key, count = "status.sync_pending", found.objects.pending
    except Exception:
        key = "status.sync_unknown"
    usage = shutil.disk_usage(rt.settings.data_dir)
    free_gb = usage.free / 1e9
    return StatusLine(
        mode=mode.value,
        sync_key=key,
        sync_count=count,
        free_gb=free_gb,
        # not usage.used: blocks reserved for root count as unavailable to the appliance, and
        # the System screen's bar shows total - free too
        used_percent=round(100 * (usage.total - usage.free) / usage.total),
        disk_low=free_gb < rt.settings.min_free_gb,
    )


def status_bar() -> None:
    """Footer: mode, sync, disk; refreshed every 10 s off the event loop."""
    with ui.footer().classes("radiant-footer q-px-md q-py-xs"):
        with ui.row().classes("w-full items-center gap-6 no-wrap text-body1"):
            mode_label = ui.label().props("data-testid=status-mode").mark("status-mode")
            sync_label = ui.label().props("data-testid=status-sync").mark("status-sync")
            disk_label = ui.label().props("data-testid=status-disk").mark("status-disk")

    async def refresh() -> None:
        line = await runtime.off_loop(status_line)
        mode_label.set_text(i18n.t("status.mode", mode=i18n.t(f"mode.{line.mode}")))
        sync_label.set_text(
            i18n.plural(line.sync_key, line.sync_count)
            if i18n.has_plural(line.sync_key)
            else i18n.t(line.sync_key, count=line.sync_count)
        )
        disk_label.set_text(
            i18n.t("status.disk", free=format.number(line.free_gb, 1),
                   percent=line.used_percent)
        )
        disk_label.classes(replace="radiant-error" if line.disk_low else "")

    ui.timer(0.05, refresh, once=True)
    ui.timer(10.0, refresh)


NAV = (
    ("nav.worklist", "/", "list", session.EVERYONE),
    ("nav.import", "/import", "usb", session.CLINICAL),
    ("nav.system", "/system", "settings", session.ADMIN),
)


def header(user: session.SessionUser, active: str) -> None:
    with ui.header().classes("radiant-header q-px-md q-py-xs items-center"):
        with ui.row().classes("w-full items-center no-wrap gap-2"):
            ui.label(i18n.t("app.name")).classes("text-h5 text-weight-bold q-mr-md")
            for key, path, icon, roles in NAV:
                if not user.may(roles):
                    continue
                button = ui.button(
                    i18n.t(key), icon=icon, on_click=lambda p=path: ui.navigate.to(p)
                )
                button.props("flat no-caps size=lg" + (" outline" if key == active else ""))
                button.props(f"data-testid=nav-{key.split('.')[1]}")
            ui.space()
            ui.label(
                i18n.t("header.user", name=user.full_name or user.username,
                       role=i18n.t(f"role.{user.role.value}"))
            ).classes("text-body1 radiant-muted")
            language_menu()
            ui.button(i18n.t("action.sign_out"), icon="logout", on_click=sign_out).props(
                "flat no-caps size=lg data-testid=sign-out"
            )


def language_menu() -> None:
    """One button per other language (no hover menus)."""
    for code, name in i18n.languages().items():
        if code == i18n.current():
            continue

        def choose(code: str = code) -> None:
            session.set_language(code)
            ui.navigate.reload()

        ui.button(name, on_click=choose).props(f"flat no-caps data-testid=lang-{code}")


def sign_out() -> None:
    session.end()
    ui.navigate.to("/login")


@contextmanager
def frame(user: session.SessionUser, active: str) -> Iterator[None]:
    """Header, status bar and the page's content column."""
    theme()
    header(user, active)
    status_bar()
    from ui import alerts  # here: ui.alerts is a sibling of this module

    alerts.banner(user)
    with ui.column().classes("w-full gap-3"):
        yield


Guarded = session.SessionUser | RedirectResponse | None


def guard_page(roles: frozenset[Role]) -> Guarded:
    """At the top of a page: the user if allowed; a redirect to sign-in without a session;
    None after showing a refusal when the role is not allowed (the page then returns None)."""
    if runtime.unprovisioned():
        return RedirectResponse(runtime.FIRST_BOOT_PATH)
    user = session.current()
    if user is None:
        return RedirectResponse("/login")
    if not user.may(roles):
        theme()
        header(user, "")
        with ui.column().classes("w-full items-center q-pa-xl"):
            ui.label(i18n.t("auth.page_forbidden")).classes("text-h5 radiant-error").mark(
                "forbidden"
            )
            ui.button(i18n.t("nav.worklist"), on_click=lambda: ui.navigate.to("/")).props(
                "no-caps size=lg"
            )
        return None
    return user


async def load_or_not_found(holder: ui.column, fetch: Callable[[], T]) -> T | None:
    """Run ``fetch`` off the event loop and clear ``holder`` for the page; on an error, say
    so and show "not found" in it instead, and return None."""
    try:
        loaded = await runtime.off_loop(fetch)
    except Exception as exc:
        notify_error(exc)
        holder.clear()
        with holder:
            ui.label(i18n.t("viewer.not_found")).classes("text-h6 radiant-error")
        return None
    holder.clear()
    return loaded
