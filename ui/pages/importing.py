"""Import: USB/CD media appear by themselves with an Import button, a progress bar with
files/total and a result summary; the network receiver's AE title, port and IP for the
scanner's setup; a web upload area for DICOM files and zip archives, stored through the API's
upload service (:func:`appliance.studies.upload.receive`: the same limits, zip-slip and zip-bomb
checks, quarantine and one ``study.upload`` audit row)."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nicegui import events, ui
from nicegui.elements.upload_files import FileUpload

from appliance.dicom import media as media_service
from appliance.dicom.media import ImportProgress, ImportSummary, Media
from appliance.errors import AppError
from appliance.studies import service as studies
from appliance.studies import upload as upload_service
from appliance.studies.models import FileResult, UploadReport
from ui import components, i18n, runtime, session

ISSUES_SHOWN = 20


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


@dataclass
class ImportRun:
    """One media import shared between its worker thread and the page's timer."""

    label: str
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: ImportProgress | None = None
    summary: ImportSummary | None = None
    counts: dict[str, int] | None = None
    error: str | None = None
    done: bool = False
    shown: bool = False


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
    receiver = rt.state("receiver")
    status = receiver.status() if receiver is not None else None
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


def upload_line(result: FileResult) -> str:
    """One uploaded file or archive entry and what became of it, in words."""
    name = f"{result.archive}/{result.name}" if result.archive else result.name
    reason = f" ({result.reason})" if result.reason else ""
    return i18n.t("import.upload_file", name=name, outcome=i18n.t(f"upload.{result.outcome}"),
                  reason=reason)


def _media_now() -> list[Media]:
    watcher = runtime.get().state("media_watcher")
    return list(watcher.current()) if watcher is not None else []


def build(user: session.SessionUser) -> None:
    state: dict[str, Any] = {"run": None, "media_key": None}
    with components.frame(user, "nav.import"):
        ui.label(i18n.t("import.title")).classes("text-h4")
        with ui.row().classes("w-full gap-4 items-stretch"):
            with ui.card().classes("radiant-card col q-pa-md"):
                ui.label(i18n.t("import.media")).classes("text-h5")
                media_list = ui.column().classes("w-full gap-2").mark("media-list")
            with ui.card().classes("radiant-card col q-pa-md"):
                ui.label(i18n.t("import.receiver")).classes("text-h5")
                receiver_box = ui.column().classes("gap-1").mark("receiver")
        with ui.card().classes("radiant-card w-full q-pa-md"):
            ui.label(i18n.t("import.progress")).classes("text-h5")
            bar = ui.linear_progress(value=0, show_value=False, size="28px").props(
                "rounded color=light-blue-5 data-testid=import-progress")
            progress_text = ui.label(i18n.t("import.idle")).classes("text-body1").props(
                "data-testid=import-progress-text").mark("import-progress-text")
            cancel = ui.button(i18n.t("action.cancel"), icon="stop").props(
                "no-caps outline size=lg data-testid=import-cancel")
            cancel.set_visibility(False)
            summary_box = ui.column().classes("w-full gap-1").props(
                "data-testid=import-summary").mark("import-summary")
        with ui.card().classes("radiant-card w-full q-pa-md"):
            ui.label(i18n.t("import.upload")).classes("text-h5")
            ui.label(i18n.t("import.upload_hint")).classes("radiant-muted")
            upload_result = ui.column().classes("w-full gap-1").mark("upload-result")
            uploader = ui.upload(multiple=True, auto_upload=True, max_files=500,
                                 label=i18n.t("import.upload_label")).props(
                "dark bordered data-testid=upload").classes("w-full").mark("upload")

    async def show_receiver() -> None:
        facts = await runtime.off_loop(_receiver_facts)
        receiver_box.clear()
        with receiver_box:
            ui.label(i18n.t("import.ae_title", value=facts["ae_title"])).classes("text-h6")
            ui.label(i18n.t("import.port", value=facts["port"])).classes("text-h6")
            ui.label(i18n.t("import.ip", value=", ".join(facts["addresses"]))).classes("text-h6")
            if facts["listening"]:
                ui.label(i18n.t("import.listening")).classes("radiant-ok")
            else:
                ui.label(i18n.t("import.not_listening", reason=facts["error"] or "-")).classes(
                    "radiant-error")

    async def show_media() -> None:
        found = await runtime.off_loop(_media_now)
        key = tuple((str(m.path), m.file_count) for m in found)
        if key == state["media_key"]:
            return
        state["media_key"] = key
        media_list.clear()
        with media_list:
            if not found:
                ui.label(i18n.t("import.no_media")).classes("radiant-muted text-body1")
            for medium in found:
                with ui.row().classes("w-full items-center no-wrap gap-3").props(
                    "data-testid=medium"
                ):
                    ui.icon("album" if medium.has_dicomdir else "usb").classes("text-h5")
                    with ui.column().classes("col gap-0"):
                        ui.label(medium.label).classes("text-h6")
                        files = "?" if medium.file_count is None else medium.file_count
                        ui.label(
                            i18n.t("import.medium_facts", files=files,
                                   dicomdir=i18n.t("common.yes" if medium.has_dicomdir
                                                   else "common.no"))
                        ).classes("radiant-muted")
                    ui.button(i18n.t("action.import"), icon="download",
                              on_click=lambda m=medium: start(m)).props(
                        "no-caps size=lg color=primary data-testid=import-medium")

    async def start(medium: Media) -> None:
        current = session.require(session.CLINICAL)
        if current is None:
            components.refuse()
            return
        run: ImportRun | None = state["run"]
        if run is not None and not run.done:
            ui.notify(i18n.t("import.busy"), type="warning")
            return
        run = ImportRun(label=medium.label)
        state["run"] = run
        summary_box.clear()
        bar.set_value(0)
        progress_text.set_text(i18n.t("import.starting", label=medium.label))
        cancel.set_visibility(True)
        await runtime.off_loop(lambda: _run_import(run, medium.path, current))
        show_progress()

    def show_progress() -> None:
        run: ImportRun | None = state["run"]
        if run is None:
            return
        if run.progress is not None and not run.done:
            p = run.progress
            bar.set_value(p.files_done / p.files_total if p.files_total else 0)
            progress_text.set_text(
                i18n.t("import.files", done=p.files_done, total=p.files_total)
            )
        if run.done and not run.shown:
            run.shown = True
            cancel.set_visibility(False)
            bar.set_value(1)
            show_summary(run)

    def show_summary(run: ImportRun) -> None:
        with summary_box:
            if run.error is not None:
                ui.label(i18n.t("import.failed", reason=run.error)).classes("radiant-error")
                return
            summary = run.summary
            assert summary is not None
            counts = summary.counts()
            progress_text.set_text(
                i18n.t("import.files", done=counts["files"], total=summary.files_total)
            )
            key = "import.done" if summary.stopped is None else "import.stopped"
            ui.label(i18n.t(key, label=run.label)).classes("text-h6 radiant-ok")
            ui.label(
                i18n.t("import.summary", imported=counts["imported"],
                       duplicates=counts["duplicates"], quarantined=counts["quarantined"],
                       refused=counts["refused"] + counts["errors"],
                       skipped=counts["skipped"])
            ).classes("text-body1").props("data-testid=import-counts").mark("import-counts")
            index = run.counts or {}
            ui.label(
                i18n.t("import.index", patients=index.get("patients", 0),
                       studies=index.get("studies", 0), series=index.get("series", 0))
            ).classes("text-h6").props("data-testid=import-index").mark("import-index")
            issues = [*summary.quarantined, *summary.refused, *summary.errors]
            if summary.dicomdir_problem:
                ui.label(summary.dicomdir_problem).classes("radiant-error")
            if issues:
                ui.label(i18n.t("import.issues")).classes("text-h6 radiant-error")
                for issue in issues[:ISSUES_SHOWN]:
                    ui.label(f"{issue.path}: {issue.reason}").classes("text-body2")
                if len(issues) > ISSUES_SHOWN:
                    ui.label(i18n.t("import.more", count=len(issues) - ISSUES_SHOWN))
            ui.button(i18n.t("nav.worklist"), icon="list",
                      on_click=lambda: ui.navigate.to("/")).props(
                "no-caps size=lg color=primary data-testid=to-worklist")

    def stop() -> None:
        run: ImportRun | None = state["run"]
        if run is not None:
            run.cancel.set()

    cancel.on_click(stop)

    async def uploaded(event: events.MultiUploadEventArguments) -> None:
        current = session.require(session.CLINICAL)
        if current is None:
            components.refuse()
            return
        upload_result.clear()
        with upload_result:
            ui.label(i18n.t("import.upload_storing", count=len(event.files))).classes(
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
            uploader.reset()
        show_upload(report)

    def show_upload(report: UploadReport) -> None:
        counts = report.counts
        upload_result.clear()
        with upload_result:
            ui.label(
                i18n.t("import.upload_summary", imported=counts.stored,
                       duplicates=counts.duplicate, quarantined=counts.quarantined,
                       refused=counts.rejected)
            ).classes("text-h6").props("data-testid=upload-counts").mark("upload-counts")
            issues = [r for r in report.files if r.outcome in ("quarantined", "rejected")]
            if issues:
                ui.label(i18n.t("import.issues")).classes("text-h6 radiant-error")
                for result in issues[:ISSUES_SHOWN]:
                    ui.label(upload_line(result)).classes("text-body2").mark("upload-issue")
                if len(issues) > ISSUES_SHOWN:
                    ui.label(i18n.t("import.more", count=len(issues) - ISSUES_SHOWN))
            if report.study_ids:
                ui.button(i18n.t("nav.worklist"), icon="list",
                          on_click=lambda: ui.navigate.to("/")).props(
                    "no-caps size=lg color=primary data-testid=upload-to-worklist"
                ).mark("upload-to-worklist")

    uploader.on_multi_upload(uploaded)
    ui.timer(0.01, show_receiver, once=True)
    ui.timer(0.01, show_media, once=True)
    ui.timer(2.0, show_media)
    ui.timer(0.3, show_progress)
