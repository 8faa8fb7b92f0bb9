"""Going online from the System screen: the remotes online mode would use are checked first
(:func:`sync.golive.readiness`, off the event loop: it contacts them), a refusal says why in
plain words, and otherwise a confirmation lists what will start before anything switches."""

from __future__ import annotations

from nicegui import ui

from sync.golive import Readiness, go_online, readiness
from ui import components, i18n, runtime, session


def _step_text(code: str, target: str) -> str:
    return i18n.t(f"golive.step.{code}", target=target)


def _refusal(found: Readiness) -> str:
    if not found.steps:
        return i18n.t("golive.nothing")
    lines = [
        i18n.t("golive.unreachable", what=_step_text(s.code, s.target), detail=s.problem)
        for s in found.steps
        if s.problem
    ]
    return " ".join([i18n.t("golive.refused"), *lines])


def _switch(user: session.SessionUser, found: Readiness) -> None:
    rt = runtime.get()
    go_online(rt.db(), rt.settings, user.actor, confirmed=True, checked=found)
    rt.services.sync.wake()


async def check_and_confirm(user: session.SessionUser) -> None:
    """Check, then refuse or ask; on confirmation switch (audited) and reload the screen."""
    with ui.dialog() as dialog, ui.card().classes("q-pa-lg gap-3").mark("online-dialog"):
        ui.label(i18n.t("golive.title")).classes("text-h6")
        body = ui.column().classes("gap-1")
        with body:
            ui.label(i18n.t("golive.checking")).classes("text-body1")
        buttons = ui.row().classes("gap-2")
    dialog.open()
    found = await runtime.off_loop(lambda: readiness(runtime.get().settings))
    body.clear()
    buttons.clear()
    with body:
        if not found.ok:
            ui.label(_refusal(found)).classes("radiant-error text-body1").props(
                "role=alert data-testid=online-refused").mark("online-refused")
        else:
            ui.label(i18n.t("golive.will_start")).classes("text-body1")
            for step in found.steps:
                ui.label("• " + _step_text(step.code, step.target)).classes("text-body1")
    with buttons:
        ui.button(i18n.t("action.cancel" if found.ok else "action.close"),
                  on_click=dialog.close).props("no-caps outline size=lg")
        if not found.ok:
            return

        async def confirm() -> None:
            current = session.require(session.ADMIN)
            if current is None:
                components.refuse()
                return
            try:
                await runtime.off_loop(lambda: _switch(current, found))
            except Exception as exc:
                components.notify_error(exc)
                return
            dialog.close()
            ui.notify(i18n.t("system.mode_changed", mode=i18n.t("mode.online")), type="positive")
            ui.navigate.reload()

        ui.button(i18n.t("system.go_online"), icon="cloud", on_click=confirm).props(
            "no-caps size=lg color=primary data-testid=confirm-online").mark("confirm-online")
