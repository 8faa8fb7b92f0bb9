"""Mounting the NiceGUI screen on the appliance's FastAPI app (``ui.run_with``)."""

from __future__ import annotations

from fastapi import FastAPI
from nicegui import ui

from appliance import __version__
from appliance.config import Settings

_registered = False


def _register_pages(settings: Settings) -> None:
    """Pages are registered once per process (NiceGUI keeps them globally)."""
    global _registered
    if _registered:
        return
    _registered = True

    @ui.page("/")
    def home() -> None:
        # Placeholder until the worklist screen exists: says what the box is and where it runs.
        with ui.column().classes("w-full items-center q-pa-xl gap-4"):
            ui.label("RadiantAI").classes("text-h3")
            ui.label(f"{settings.site_name} · version {__version__} · mode {settings.mode.value}")
            ui.label(
                f"DICOM receiver AE title {settings.dicom_ae_title}, port {settings.dicom_port}"
            )
            ui.label(
                "AI output is decision support only: preliminary and UNVERIFIED until a "
                "radiologist signs the report."
            ).classes("text-warning")
            ui.link("API documentation", "/docs").classes("text-h6")


def mount(app: FastAPI, settings: Settings, secret: str) -> None:
    _register_pages(settings)
    ui.run_with(
        app,
        title="RadiantAI",
        dark=True,
        storage_secret=secret,
        show_welcome_message=False,
        reconnect_timeout=10.0,
    )
