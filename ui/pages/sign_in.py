"""Sign in: username and password with large keys; the auth service's lockout applies."""

from __future__ import annotations

from fastapi.responses import RedirectResponse
from nicegui import app, ui

from ui import components, i18n, runtime, session


def register() -> None:
    @ui.page("/login")
    def login_page() -> RedirectResponse | None:
        if runtime.unprovisioned():
            return RedirectResponse(runtime.FIRST_BOOT_PATH)
        if session.current() is not None:
            return RedirectResponse("/")
        build()
        return None


def build() -> None:
    components.theme()
    expired = bool(app.storage.user.pop(session.EXPIRED, False))
    box = ui.column().classes("absolute-center items-stretch gap-4")
    with box.style("width: min(520px, 92vw)"):
        ui.label(i18n.t("app.name")).classes("text-h3 text-weight-bold text-center")
        ui.label(i18n.t("signin.title")).classes("text-h5 text-center radiant-muted")
        if expired:
            ui.label(i18n.t("signin.expired")).classes("radiant-error text-center").mark(
                "signin-expired"
            )
        username = ui.input(i18n.t("signin.username")).props(
            "outlined autofocus autocomplete=username data-testid=username input-class=text-h6"
        ).mark("username")
        password = ui.input(i18n.t("signin.password"), password=True,
                            password_toggle_button=True).props(
            "outlined autocomplete=current-password data-testid=password input-class=text-h6"
        ).mark("password")
        message = ui.label().classes("radiant-error text-body1").props(
            "role=alert data-testid=signin-message"
        ).mark("signin-message")
        button = ui.button(i18n.t("signin.submit"), icon="login").props(
            "size=xl no-caps color=primary data-testid=sign-in"
        ).mark("sign-in")

        async def submit() -> None:
            message.set_text("")
            button.props("loading")
            client = session.client_address()
            try:
                user = await runtime.off_loop(
                    lambda: session.sign_in(
                        str(username.value or ""), str(password.value or ""),
                        client,
                    )
                )
            except session.SignInFailed as exc:
                message.set_text(exc.message())
                password.set_value("")
                return
            finally:
                button.props(remove="loading")
            session.start(user)
            ui.navigate.to("/")

        button.on_click(submit)
        password.on("keydown.enter", submit)
        with ui.row().classes("justify-center gap-2"):
            components.language_menu()
        ui.label(i18n.t("ai.banner")).classes("text-caption radiant-muted text-center")
