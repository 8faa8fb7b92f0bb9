"""The first-boot screen (``/first-boot``): the answers of ``radiant provision`` on the box's
own touchscreen, or an enrollment bundle pasted in, while the box is unprovisioned.

Hooks for :mod:`ui.mount`: :func:`register` defines the page, :func:`is_provisioned` says
whether the screens should send the user here. The page answers only the box's own screen
(a loopback client) and only while the box is unprovisioned: nobody else on the clinic's network
can claim a new box. The answers take effect when the appliance restarts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import zoneinfo
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import run, ui

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import AppContext
from provisioning import service

PATH = "/first-boot"


def is_provisioned(settings: Settings) -> bool:
    """True once the box has been provisioned (CLI or this screen)."""
    return service.is_provisioned(settings)


def _local(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "testclient"


def submit(
    settings: Settings, answers: dict[str, Any], password: str, bundle_text: str, client: str
) -> str:
    """Provision from the screen's fields; returns the message to show (errors included)."""
    raw: dict[str, Any] = {}
    bundle_sha = None
    try:
        if bundle_text.strip():
            data = bundle_text.strip().encode("utf-8")
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
        return f"error: {exc}"
    except service.AlreadyProvisioned as exc:
        return f"error: {exc}"
    notes = "".join(f" Note: {w}." for w in result.warnings)
    return (
        f"Provisioned {result.device_id}. Administrator {result.admin_username} created. "
        f"Restart the appliance to apply the settings.{notes}"
    )


def register(settings: Settings, ctx: AppContext) -> None:
    """Define ``/first-boot`` on NiceGUI's app."""

    @ui.page(PATH)
    def first_boot(request: Request) -> RedirectResponse | None:
        if is_provisioned(settings):
            return RedirectResponse("/")
        if not _local(request):
            ui.label("This box is not set up yet: use its own screen.").classes("text-h5")
            return None
        _build(settings, request.client.host if request.client else "localhost")
        return None


def _build(settings: Settings, client: str) -> None:
    fields: dict[str, Any] = {}
    with ui.column().classes("w-full items-stretch q-pa-lg gap-3").style("max-width: 720px"):
        ui.label("Set up this RadiantAI box").classes("text-h4")
        ui.label("Paste an enrollment bundle from your hospital's IT, or fill in the fields.")
        bundle = ui.textarea("Enrollment bundle (JSON)").props("outlined")
        fields["site_name"] = ui.input("Site name").props("outlined")
        fields["timezone"] = ui.select(
            sorted(zoneinfo.available_timezones()), label="Time zone", value="UTC", with_input=True
        ).props("outlined")
        fields["language"] = ui.select(
            {"en": "English", "fr": "Français"}, value="en", label="Language"
        ).props("outlined")
        fields["admin_username"] = ui.input("Administrator user name").props("outlined")
        password = ui.input("Administrator password", password=True).props("outlined")
        fields["dicom_ae_title"] = ui.input("DICOM AE title", value="RADIANT").props("outlined")
        fields["dicom_port"] = ui.input("DICOM port", value="11112").props("outlined")
        fields["remote"] = ui.select(
            {"": "none", "s3": "S3", "azure": "Azure Blob"}, value="", label="Storage remote"
        ).props("outlined")
        for name, label in (
            ("bucket", "Bucket / container"),
            ("endpoint", "Endpoint URL"),
            ("region", "Region (S3)"),
            ("access_key", "Access key (S3)"),
            ("secret_key", "Secret key (S3)"),
            ("azure_account", "Account (Azure)"),
            ("azure_key", "Account key (Azure)"),
            ("inference_endpoint", "Inference endpoint URL (online mode)"),
        ):
            fields[name] = ui.input(label, password=name.endswith("key")).props("outlined")
        message = ui.label().classes("text-body1").props("role=alert")

        async def go() -> None:
            values = {name: element.value for name, element in fields.items()}
            text = await run.io_bound(
                submit,
                settings,
                values,
                str(password.value or ""),
                str(bundle.value or ""),
                client,
            )
            password.set_value("")
            message.set_text(str(text or ""))

        ui.button("Set up", on_click=go).props("size=xl no-caps color=primary")
