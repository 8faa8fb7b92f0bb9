"""What the import screen shows: the receiver's facts for the scanner's setup, the media
found with their Import buttons, a media import's summary and an upload's report."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nicegui import ui

from appliance.dicom.media import ImportProgress, ImportSummary, Media
from appliance.studies.models import FileResult, UploadReport
from ui import i18n

ISSUES_SHOWN = 20


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


def upload_line(result: FileResult) -> str:
    """One uploaded file or archive entry and what became of it, in words."""
    name = f"{result.archive}/{result.name}" if result.archive else result.name
    reason = f" ({result.reason})" if result.reason else ""
    return i18n.t("import.upload_file", name=name, outcome=i18n.t(f"upload.{result.outcome}"),
                  reason=reason)



def receiver_facts(facts: dict[str, Any]) -> None:
    """AE title, port, addresses and whether the receiver listens."""
    ui.label(i18n.t("import.ae_title", value=facts["ae_title"])).classes("text-h6")
    ui.label(i18n.t("import.port", value=facts["port"])).classes("text-h6")
    ui.label(i18n.t("import.ip", value=", ".join(facts["addresses"]))).classes("text-h6")
    if facts["listening"]:
        ui.label(i18n.t("import.listening")).classes("radiant-ok")
    else:
        ui.label(i18n.t("import.not_listening", reason=facts["error"] or "-")).classes(
            "radiant-error")


def media_rows(found: list[Media], start: Callable[[Media], Awaitable[None]]) -> None:
    """One row per medium (CD or USB, files, DICOMDIR) with its Import button."""
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


def import_summary(run: ImportRun, progress_text: ui.label) -> None:
    """A finished media import: its failure, or its counts, index, issues and the way on."""
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
        i18n.t("import.index", patients=i18n.plural("count.patients", index.get("patients", 0)),
               studies=i18n.plural("count.studies", index.get("studies", 0)),
               series=i18n.plural("count.series", index.get("series", 0)))
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


def upload_summary(report: UploadReport) -> None:
    """An upload's counts, its quarantined or refused files and the way to the worklist."""
    counts = report.counts
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
