"""Import: USB/CD media appear by themselves with an Import button, a progress bar with
files/total and a result summary; the network receiver's AE title, port and IP for the
scanner's setup; a web upload area for DICOM files and zip archives, stored through the API's
upload service (:func:`appliance.studies.upload.receive`: the same limits, zip-slip and zip-bomb
checks, quarantine and one ``study.upload`` audit row)."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from nicegui import events, ui
from nicegui.elements.upload_files import FileUpload

from appliance.dicom import media as media_service
from appliance.dicom.media import ImportProgress, Media
from appliance.errors import AppError
from appliance.studies import service as studies
from appliance.studies import upload as upload_service
from appliance.studies.models import UploadReport
from ui import components, i18n, runtime, session
from ui.pages import import_panels
from ui.pages.import_panels import ImportRun


def register() -> None:
    @ui.page("/import")
    def import_page() -> components.Guarded:
        user = components.guard_page(session.CLINICAL)
        if not isinstance(user, session.SessionUser):
            return user
        build(user)
        return None


def addresses(host: str) -> list[str]:
    """The IPv4 addresses a scanner can reach the receiver at."""
    if host not in ("0.0.0.0", "", "::"):  # noqa: S104
        return [host]
    found: list[str] = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: picks the outgoing interface
        found.append(str(probe.getsockname()[0]))
    except OSError:
        pass
    finally:
        probe.close()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            address = str(info[4][0])
            if address not in found and not address.startswith("127."):
                found.append(address)
    except OSError:
        pass
    return found or ["127.0.0.1"]


def _run_import(run: ImportRun, path: Path, user: session.SessionUser) -> None:
    rt = runtime.get()

    def progress(update: ImportProgress) -> None:
        run.progress = update

    try:
        summary = media_service.import_media(
            rt.ctx, path, actor=user.actor, progress=progress, cancel=run.cancel
        )
        run.summary = summary
        run.counts = studies.index_counts(rt.db(), summary.study_ids)
    except media_service.MediaError as exc:
        run.error = str(exc)
    except Exception as exc:
        run.error = getattr(exc, "detail", None) or exc.__class__.__name__
    finally:
        run.done = True


def _receiver_facts() -> dict[str, Any]:
    rt = runtime.get()
    status = rt.services.receiver.status()
    return {
        "ae_title": rt.settings.dicom_ae_title,
        "port": rt.settings.dicom_port,
        "addresses": addresses(rt.settings.dicom_host),
        "listening": bool(status and status.listening),
        "error": status.error if status else None,
    }


def _quoted(name: str) -> str:
    return name.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")


def multipart_body(
    files: Sequence[FileUpload], boundary: str
) -> tuple[AsyncIterator[bytes], int]:
    """The files as the multipart body the API's upload route reads (field ``files``), streamed
    from the uploaded files, and its length."""
    heads = [
        (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{upload_service.FIELD}\"; "
            f"filename=\"{_quoted(item.name or 'upload')}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for item in files
    ]
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(h) + item.size() + 2 for h, item in zip(heads, files, strict=True))

    async def body() -> AsyncIterator[bytes]:
        for head, item in zip(heads, files, strict=True):
            yield head
            async for chunk in item.iterate():
                yield chunk
            yield b"\r\n"
        yield tail

    return body(), length + len(tail)


async def store_uploads(
    files: Sequence[FileUpload], user: session.SessionUser
) -> UploadReport:
    """Store uploaded files and zip archives through the API's upload service."""
    rt = runtime.get()
    boundary = "radiant-" + secrets.token_hex(16)
    body, length = multipart_body(files, boundary)
    return await upload_service.receive(
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
        content_length=str(length),
        ingestor=rt.ctx.ingestor,
        settings=rt.settings,
        actor=user.actor,
    )


def _media_now() -> list[Media]:
    return list(runtime.get().services.media_watcher.current())


def build(user: session.SessionUser) -> None:
    ImportScreen().build(user)


class ImportScreen:
    """The import screen of one session: the media import under way and what is shown."""

    def __init__(self) -> None:
        self.run: ImportRun | None = None
        self.media_key: tuple[tuple[str, int | None], ...] | None = None

    def build(self, user: session.SessionUser) -> None:
        with components.frame(user, "nav.import"):
            ui.label(i18n.t("import.title")).classes("text-h4")
            with ui.row().classes("w-full gap-4 items-stretch"):
                with ui.card().classes("radiant-card col q-pa-md"):
                    ui.label(i18n.t("import.media")).classes("text-h5")
                    self.media_list = ui.column().classes("w-full gap-2").mark("media-list")
                with ui.card().classes("radiant-card col q-pa-md"):
                    ui.label(i18n.t("import.receiver")).classes("text-h5")
                    self.receiver_box = ui.column().classes("gap-1").mark("receiver")
            self._progress_card()
            with ui.card().classes("radiant-card w-full q-pa-md"):
                ui.label(i18n.t("import.upload")).classes("text-h5")
                ui.label(i18n.t("import.upload_hint")).classes("radiant-muted")
                self.upload_result = ui.column().classes("w-full gap-1").mark("upload-result")
                self.uploader = ui.upload(multiple=True, auto_upload=True, max_files=500,
                                          label=i18n.t("import.upload_label")).props(
                    "dark bordered data-testid=upload").classes("w-full").mark("upload")
        self.cancel.on_click(self.stop)
        self.uploader.on_multi_upload(self.uploaded)
        ui.timer(0.01, self.show_receiver, once=True)
        ui.timer(0.01, self.show_media, once=True)
        ui.timer(2.0, self.show_media)
        ui.timer(0.3, self.show_progress)

    def _progress_card(self) -> None:
        with ui.card().classes("radiant-card w-full q-pa-md"):
            ui.label(i18n.t("import.progress")).classes("text-h5")
            self.bar = ui.linear_progress(value=0, show_value=False, size="28px").props(
                "rounded color=light-blue-5 data-testid=import-progress")
            self.progress_text = ui.label(i18n.t("import.idle")).classes("text-body1").props(
                "data-testid=import-progress-text").mark("import-progress-text")
            self.cancel = ui.button(i18n.t("action.cancel"), icon="stop").props(
                "no-caps outline size=lg data-testid=import-cancel")
            self.cancel.set_visibility(False)
            self.summary_box = ui.column().classes("w-full gap-1").props(
                "data-testid=import-summary").mark("import-summary")

    async def show_receiver(self) -> None:
        facts = await runtime.off_loop(_receiver_facts)
        self.receiver_box.clear()
        with self.receiver_box:
            import_panels.receiver_facts(facts)

    async def show_media(self) -> None:
        found = await runtime.off_loop(_media_now)
        key = tuple((str(m.path), m.file_count) for m in found)
        if key == self.media_key:
            return
        self.media_key = key
        self.media_list.clear()
        with self.media_list:
            import_panels.media_rows(found, self.start)

    async def start(self, medium: Media) -> None:
        current = session.require(session.CLINICAL)
        if current is None:
            components.refuse()
            return
        run = self.run
        if run is not None and not run.done:
            ui.notify(i18n.t("import.busy"), type="warning")
            return
        run = ImportRun(label=medium.label)
        self.run = run
        self.summary_box.clear()
        self.bar.set_value(0)
        self.progress_text.set_text(i18n.t("import.starting", label=medium.label))
        self.cancel.set_visibility(True)
        await runtime.off_loop(lambda: _run_import(run, medium.path, current))
        self.show_progress()

    def show_progress(self) -> None:
        run = self.run
        if run is None:
            return
        if run.progress is not None and not run.done:
            p = run.progress
            self.bar.set_value(p.files_done / p.files_total if p.files_total else 0)
            self.progress_text.set_text(
                i18n.t("import.files", done=p.files_done, total=p.files_total)
            )
        if run.done and not run.shown:
            run.shown = True
            self.cancel.set_visibility(False)
            self.bar.set_value(1)
            with self.summary_box:
                import_panels.import_summary(run, self.progress_text)

    def stop(self) -> None:
        if self.run is not None:
            self.run.cancel.set()

    async def uploaded(self, event: events.MultiUploadEventArguments) -> None:
        current = session.require(session.CLINICAL)
        if current is None:
            components.refuse()
            return
        upload_result = self.upload_result
        upload_result.clear()
        with upload_result:
            ui.label(i18n.plural("import.upload_storing", len(event.files))).classes(
                "radiant-muted")
        try:
            report = await store_uploads(event.files, current)
        except AppError as exc:
            upload_result.clear()
            with upload_result:
                ui.label(exc.detail).classes("radiant-error").props(
                    "data-testid=upload-error").mark("upload-error")
            components.notify_error(exc)
            return
        except Exception as exc:
            components.notify_error(exc)
            return
        finally:
            self.uploader.reset()
        upload_result.clear()
        with upload_result:
            import_panels.upload_summary(report)
