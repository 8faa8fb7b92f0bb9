"""Mounting the NiceGUI screens on the appliance's FastAPI app (``ui.run_with``).

The first-boot screen (``ui/first_boot.py``, provisioning) is optional: when the module exists
its ``register(settings, ctx)`` is called here, and every page sends the user to
``/first-boot`` while its ``is_provisioned(settings)`` says False.
"""

from __future__ import annotations

from types import ModuleType

from fastapi import FastAPI
from nicegui import app as nicegui_app
from nicegui import core, helpers, ui
from nicegui.storage import Storage

from appliance.config import Settings
from appliance.context import AppContext
from appliance.services import Services
from ui import i18n, ohif, runtime, session
from ui.pages import analysis, importing, report, sign_in, system, viewer, worklist

PAGES: tuple[ModuleType, ...] = (sign_in, worklist, importing, viewer, analysis, report, system)


def _registered() -> bool:
    return any(getattr(route, "path", None) == "/login" for route in core.app.routes)


def register_pages(settings: Settings, ctx: AppContext) -> None:
    """Define the pages on NiceGUI's app (once per process, again after a test reset)."""
    if _registered():
        return
    first_boot = runtime.first_boot_module()
    if first_boot is not None:
        first_boot.register(settings, ctx)
    for page in PAGES:
        page.register()


def _session_store(settings: Settings) -> None:
    """Screen sessions live in the data dir (private), not in the working directory."""
    if helpers.is_pytest() or helpers.is_user_simulation():
        return  # the NiceGUI test plugin chose a temporary place
    folder = settings.data_dir / "screen-sessions"
    folder.mkdir(mode=0o700, exist_ok=True)
    Storage.path = folder.resolve()
    nicegui_app.storage = Storage()


def mount(app: FastAPI, services: Services) -> None:
    """Serve the screens at ``/`` of ``app`` with the services the composition root built."""
    settings, context, secret = services.settings, services.ctx, services.ctx.keys.session
    runtime.install(runtime.Runtime(services))
    app.state.session_user = session.request_user_id  # DICOMweb reads accept the screen cookie
    app.state.session_cookie_key = secret  # the key NiceGUI's session middleware signs with
    _session_store(settings)
    i18n.set_site_language(settings.language)
    ohif.install(app, settings)  # before the screens' catch-all handling
    register_pages(settings, context)
    ui.run_with(
        app,
        title="RadiantAI",
        dark=True,
        storage_secret=secret,
        # The cookie only names the browser's server-side storage; ui/session.py enforces the
        # idle and absolute limits there. Secure and HttpOnly: appliance/web_security.py.
        session_middleware_kwargs={
            "same_site": "strict",
            "max_age": int(settings.session_max_hours * 3600),
        },
        show_welcome_message=False,
        reconnect_timeout=10.0,
    )
