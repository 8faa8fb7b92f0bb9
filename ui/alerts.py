"""The critical alert banner on every signed-in screen (:func:`ui.components.frame`).

While an alert is open (an analysis' urgency is critical and nobody acknowledged it), a red
banner tells whoever is at the screen to call the radiologist, with a tone. It is acknowledged by
typing a name (audited with the signed-in account). "Remind me later" hides it for
``RADIANT_TRIAGE_REALERT_S``; then it comes back with the tone, and the tone repeats at that
interval while it stays open. The open alerts carry ids, modalities and times only, so the poll
is not audited; opening the study is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nicegui import ui

from appliance.triage import alerts
from appliance.triage.models import Alert
from ui import format, i18n, runtime, session

POLL_S = 5.0

#: Three short beeps through Web Audio (no file); counts them for the browser tests.
TONE_JS = (
    "(() => { window.radiantAlertTones = (window.radiantAlertTones || 0) + 1; try {"
    " const c = new (window.AudioContext || window.webkitAudioContext)();"
    " [0, 0.4, 0.8].forEach(t => { const o = c.createOscillator(), g = c.createGain();"
    " o.frequency.value = 880; o.connect(g); g.connect(c.destination);"
    " g.gain.setValueAtTime(0.3, c.currentTime + t); o.start(c.currentTime + t);"
    " o.stop(c.currentTime + t + 0.25); }); } catch (e) {} })()"
)


@dataclass
class BannerState:
    shown: tuple[str, ...] = ()
    snoozed_until: float = 0.0
    last_tone: float = 0.0
    seen: set[str] = field(default_factory=set)


def decide(
    state: BannerState, ids: tuple[str, ...], now: float, realert: float
) -> tuple[bool, bool]:
    """(draw the banner, sound the tone) for the open alerts ``ids`` at ``now`` (seconds).

    A new alert shows at once with the tone, even while snoozed. Snoozed ("Remind me later"),
    nothing shows until ``realert`` seconds have passed. While shown, the tone sounds again every
    ``realert`` seconds until the alert is acknowledged."""
    fresh = any(i not in state.seen for i in ids)
    if now < state.snoozed_until and not fresh:
        return False, False
    state.seen.update(ids)
    redraw = ids != state.shown
    state.shown = ids
    tone = fresh or now - state.last_tone >= realert
    if tone:
        state.last_tone = now
    return redraw, tone


def _describe(alert: Alert) -> str:
    modalities = " ".join(m for m in (alert.modalities or "").split("\\") if m) or "-"
    return i18n.t("alert.study", modality=modalities, received=format.received(alert.received_at))


def banner(user: session.SessionUser) -> None:
    """The banner's place at the top of the page and its poll."""
    holder = ui.column().classes("w-full gap-0").mark("alert-holder")
    state = BannerState()
    realert = float(runtime.get().settings.triage_realert_s)

    async def acknowledge(alert_id: str, name: str) -> None:
        if session.require(session.EVERYONE) is None:
            return
        try:
            await runtime.off_loop(
                lambda: alerts.acknowledge(runtime.get().db(), alert_id, name, user.actor)
            )
        except Exception as exc:
            ui.notify(getattr(exc, "detail", None) or str(exc), type="negative")
            return
        ui.notify(i18n.t("alert.acknowledged"), type="positive")
        await check(force=True)

    def snooze() -> None:
        state.snoozed_until = time.monotonic() + realert
        state.shown = ()
        holder.clear()

    def draw(found: list[Alert]) -> None:
        holder.clear()
        with (
            holder,
            ui.card()
            .classes("w-full bg-red-10 text-white q-pa-md gap-2")
            .props("data-testid=critical-alert role=alert")
            .mark("critical-alert"),
        ):
            ui.label(i18n.t("alert.title", count=len(found))).classes("text-h5 text-weight-bold")
            ui.label(i18n.t("alert.instruction")).classes("text-h6")
            name = (
                ui.input(i18n.t("alert.name"))
                .props("outlined dark data-testid=alert-name")
                .classes("w-80")
                .mark("alert-name")
            )
            for alert in found:
                with ui.row().classes("w-full items-center gap-3"):
                    ui.label(_describe(alert)).classes("text-body1 col")
                    ui.button(
                        i18n.t("alert.open"),
                        icon="description",
                        on_click=lambda a=alert: ui.navigate.to(f"/report/{a.study_id}"),
                    ).props("no-caps size=lg color=white text-color=red-10")
                    ui.button(
                        i18n.t("alert.acknowledge"),
                        icon="check",
                        on_click=lambda a=alert: acknowledge(a.id, str(name.value or "")),
                    ).props("no-caps size=lg outline data-testid=alert-ack").mark("alert-ack")
            ui.button(i18n.t("alert.later"), icon="snooze", on_click=snooze).props(
                "flat no-caps size=lg text-color=white data-testid=alert-later"
            )

    async def check(force: bool = False) -> None:
        try:
            found = await runtime.off_loop(lambda: alerts.open_alerts(runtime.get().db()))
        except Exception:  # the next poll tries again; the screen keeps working
            return
        ids = tuple(a.id for a in found)
        if not ids:
            if state.shown:
                holder.clear()
            state.shown = ()
            return
        redraw, tone = decide(state, ids, time.monotonic(), realert)
        if redraw or force:
            draw(found)
        if tone:
            ui.run_javascript(TONE_JS)

    ui.timer(0.05, check, once=True)
    ui.timer(POLL_S, check)
