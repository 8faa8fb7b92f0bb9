"""The first-boot screen (``/first-boot``): the answers of ``radiant provision`` on the box's
own touchscreen, or an enrollment bundle pasted in or uploaded as a file, while the box is
unprovisioned.

Hooks for :mod:`ui.mount`: :func:`register` defines the page, :func:`is_provisioned` says
whether the screens should send the user here. The page answers only the box's own screen
(a loopback client) and only while the box is unprovisioned: nobody else on the clinic's network
can claim a new box. The answers take effect when the appliance restarts; the administrator
exists at once, so the screen then offers the sign-in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import zoneinfo
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import events, run, ui

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext
from provisioning import service
from ui import components, i18n

PATH = "/first-boot"
BUNDLE_MAX_BYTES = 256 * 1024
# The answers the form asks, in order; each has a catalog label ``firstboot.field.<name>``.
TEXT_FIELDS = ("site_name", "admin_username")
REMOTE_FIELDS = (
    "bucket",
    "endpoint",
    "region",
    "access_key",
    "secret_key",
    "azure_account",
    "azure_key",
    "inference_endpoint",
)
SECRET_FIELDS = frozenset({"secret_key", "azure_key"})
# Answers the service may name in an error, with their catalog labels (others: generic text).
FIELD_KEYS = frozenset(
    {
        *TEXT_FIELDS,
        *REMOTE_FIELDS,
        "timezone",
        "language",
        "report_language",
        "dicom_ae_title",
        "dicom_port",
        "remote",
        "admin_password",
        "bundle",
    }
)


def is_provisioned(settings: Settings) -> bool:
    """True once the box has been provisioned (CLI or this screen)."""
    return service.is_provisioned(settings)


def is_local(host: str) -> bool:
    """Whether ``host`` (the client's address) is the box itself."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "testclient"  # Starlette's TestClient


@dataclass(frozen=True)
class Outcome:
    """What :func:`submit` did: ``field`` names the bad answer (None when provisioned);
    ``reason`` is the provisioning service's sentence."""

    ok: bool
    field: str | None = None
    reason: str = ""
    device_id: str = ""
    admin_username: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)


def submit(
    settings: Settings,
    answers: dict[str, Any],
    password: str,
    bundle: bytes,
    client: str,
) -> Outcome:
    """Provision from the screen's fields and an optional enrollment bundle (blocking: call off
    the event loop). Nothing is written unless every answer passes."""
    raw: dict[str, Any] = {}
    bundle_sha = None
    try:
        if bundle.strip():
            if len(bundle) > BUNDLE_MAX_BYTES:
                raise service.ProvisionError("bundle", "too large for an enrollment bundle")
            data = bundle.strip()
            bundle_sha = hashlib.sha256(data).hexdigest()
            raw.update(service.read_bundle(data))
        raw.update({k: v for k, v in answers.items() if v not in (None, "")})
        result = service.provision_box(
            settings,
            raw,
            password,
            Actor(name="screen:first-boot", role="system", client=client),
            bundle_sha256=bundle_sha,
        )
    except service.ProvisionError as exc:
        reason = str(exc).removeprefix(f"{exc.field}: ")
        return Outcome(ok=False, field=exc.field, reason=reason)
    except service.AlreadyProvisioned:
        return Outcome(ok=False, field=None, reason="already")
    return Outcome(
        ok=True,
        device_id=result.device_id,
        admin_username=result.admin_username,
        warnings=list(result.warnings),
    )


def field_label(name: str) -> str:
    """The translated label of answer ``name``."""
    return i18n.t(f"firstboot.field.{name}") if name in FIELD_KEYS else name


def error_text(outcome: Outcome) -> str:
    """The plain-words message of a refused answer."""
    if outcome.reason == "already":
        return i18n.t("firstboot.already")
    reason = i18n.t("firstboot.required") if outcome.reason == "required" else outcome.reason
    if outcome.field is None:
        return reason
    return i18n.t("firstboot.invalid", field=field_label(outcome.field), reason=reason)


def register(settings: Settings, ctx: AppContext) -> None:
    """Define ``/first-boot`` on NiceGUI's app."""

    @ui.page(PATH)
    def first_boot(request: Request) -> RedirectResponse | None:
        if is_provisioned(settings):
            return RedirectResponse("/")
        host = request.client.host if request.client else ""
        components.theme()
        if not is_local(host):
            ui.label(i18n.t("firstboot.remote_refused")).classes("text-h5 q-pa-lg").props(
                "data-testid=first-boot-refused"
            ).mark("first-boot-refused")
            return None
        _build(settings, host or "localhost")
        return None


def _build(settings: Settings, client: str) -> None:
    fields: dict[str, Any] = {}
    bundle_file: dict[str, bytes] = {}
    with ui.column().classes("w-full items-stretch q-pa-lg gap-3").style("max-width: 760px"):
        with ui.row().classes("w-full items-center justify-between"):
            ui.label(i18n.t("firstboot.title")).classes("text-h4").mark("first-boot")
            with ui.row().classes("gap-2"):
                components.language_menu()
        form = ui.column().classes("w-full items-stretch gap-3")
        with form:
            ui.label(i18n.t("firstboot.hint")).classes("text-body1 radiant-muted")
            bundle = ui.textarea(i18n.t("firstboot.field.bundle")).props(
                "outlined data-testid=fb-bundle"
            ).mark("fb-bundle")
            bundle_note = ui.label().classes("radiant-ok").mark("fb-bundle-file")

            async def bundle_uploaded(event: events.UploadEventArguments) -> None:
                if event.file.size() > BUNDLE_MAX_BYTES:
                    bundle.error = i18n.t("firstboot.bundle_too_large")
                    return
                bundle_file["data"] = await event.file.read()
                bundle.error = None
                bundle_note.set_text(i18n.t("firstboot.bundle_loaded", name=event.file.name))

            ui.upload(
                label=i18n.t("firstboot.bundle_upload"),
                auto_upload=True,
                max_files=1,
                max_file_size=BUNDLE_MAX_BYTES,
                on_upload=bundle_uploaded,
            ).props(
                "dark bordered accept=.json,application/json data-testid=fb-bundle-upload"
            ).classes("w-full").mark("fb-bundle-upload")
            for name in TEXT_FIELDS:
                fields[name] = ui.input(field_label(name)).props(
                    f"outlined data-testid=fb-{name}"
                ).mark(f"fb-{name}")
            password = ui.input(field_label("admin_password"), password=True,
                                password_toggle_button=True).props(
                "outlined autocomplete=new-password data-testid=fb-admin_password"
            ).mark("fb-admin_password")
            fields["timezone"] = ui.select(
                sorted(zoneinfo.available_timezones()),
                label=field_label("timezone"),
                value="UTC",
                with_input=True,
            ).props("outlined data-testid=fb-timezone").mark("fb-timezone")
            fields["language"] = ui.select(
                i18n.languages(), value=i18n.current(), label=field_label("language")
            ).props("outlined data-testid=fb-language").mark("fb-language")
            fields["report_language"] = ui.select(
                i18n.languages(), value=i18n.current(), label=field_label("report_language")
            ).props("outlined data-testid=fb-report_language").mark("fb-report_language")
            fields["dicom_ae_title"] = ui.input(
                field_label("dicom_ae_title"), value="RADIANT"
            ).props("outlined data-testid=fb-dicom_ae_title").mark("fb-dicom_ae_title")
            fields["dicom_port"] = ui.input(field_label("dicom_port"), value="11112").props(
                "outlined inputmode=numeric data-testid=fb-dicom_port"
            ).mark("fb-dicom_port")
            fields["remote"] = ui.select(
                {"": i18n.t("firstboot.remote_none"), "s3": "S3", "azure": "Azure Blob"},
                value="",
                label=field_label("remote"),
            ).props("outlined data-testid=fb-remote").mark("fb-remote")
            for name in REMOTE_FIELDS:
                fields[name] = ui.input(field_label(name), password=name in SECRET_FIELDS).props(
                    f"outlined data-testid=fb-{name}"
                ).mark(f"fb-{name}")
            button = ui.button(i18n.t("firstboot.submit"), icon="check").props(
                "size=xl no-caps color=primary data-testid=fb-submit"
            ).mark("fb-submit")
        message = ui.label().classes("text-body1 radiant-error").props(
            "role=alert data-testid=fb-message"
        ).mark("fb-message")
        done = ui.column().classes("w-full gap-2").mark("fb-done")
        done.set_visibility(False)

    widgets: dict[str, Any] = {**fields, "admin_password": password, "bundle": bundle}

    async def go() -> None:
        for element in widgets.values():
            element.error = None
        message.set_text("")
        values = {name: element.value for name, element in fields.items()}
        pasted = str(bundle.value or "").encode("utf-8")
        data = pasted if pasted.strip() else bundle_file.get("data", b"")
        button.props("loading")
        try:
            outcome = await run.io_bound(
                submit, settings, values, str(password.value or ""), data, client
            )
        finally:
            button.props(remove="loading")
        password.set_value("")
        if outcome is None:
            return
        if not outcome.ok:
            text = error_text(outcome)
            if outcome.field in widgets:
                widgets[outcome.field].error = text
            message.set_text(text)
            return
        form.set_visibility(False)
        done.clear()
        with done:
            ui.label(
                i18n.t("firstboot.done", device=outcome.device_id, admin=outcome.admin_username)
            ).classes("text-h6 radiant-ok").mark("fb-provisioned")
            ui.label(i18n.t("firstboot.restart")).classes("text-h6")
            for warning in outcome.warnings:
                ui.label(i18n.t("firstboot.note", text=warning)).classes("text-body1")
            ui.button(i18n.t("firstboot.to_sign_in"), icon="login",
                      on_click=lambda: ui.navigate.to("/login")).props(
                "size=xl no-caps color=primary data-testid=fb-to-sign-in"
            ).mark("fb-to-sign-in")
        done.set_visibility(True)

    button.on_click(go)
