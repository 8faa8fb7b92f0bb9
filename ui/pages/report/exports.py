"""The exports card: PDF in the browser, JSON, DICOM SR and FHIR downloads, send to a PACS
peer (each export audited by the export service)."""

from __future__ import annotations

from nicegui import ui

from appliance.export import service as export
from appliance.reports.models import ReportOut
from ui import components, i18n, runtime, session
from ui.pages.report import data
from ui.pages.report.roles import EXPORTERS, SENDERS


def exports(user: session.SessionUser, report: ReportOut) -> None:
    peers = sorted(runtime.get().settings.peers)
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        ui.label(i18n.t("report.exports")).classes("text-h6")
        with ui.row().classes("items-center gap-2"):
            ui.button(i18n.t("export.pdf"), icon="picture_as_pdf",
                      on_click=lambda: ui.navigate.to(f"/screen/report/{report.id}/pdf",
                                                      new_tab=True)).props(
                "no-caps size=lg outline data-testid=export-pdf").mark("export-pdf")

            async def download(kind: str) -> None:
                current = session.require(EXPORTERS)
                if current is None:
                    components.refuse()
                    return
                try:
                    content, suffix, media = await runtime.off_loop(
                        lambda: data.download(report.id, kind, current))
                except Exception as exc:
                    components.notify_error(exc)
                    return
                name = f"report-{report.id}-v{report.current_version}.{suffix}"
                ui.download.content(content, name, media)

            for kind, key in (("json", "export.json"), ("sr", "export.sr"),
                              ("fhir", "export.fhir")):
                ui.button(i18n.t(key), icon="download",
                          on_click=lambda k=kind: download(k)).props(
                    f"no-caps size=lg outline data-testid=export-{kind}")
            if user.may(SENDERS):
                if peers:
                    peer = ui.select(peers, value=peers[0], label=i18n.t("export.peer")).props(
                        "outlined data-testid=pacs-peer").classes("w-48")

                    async def send() -> None:
                        current = session.require(SENDERS)
                        if current is None:
                            components.refuse()
                            return
                        try:
                            result = await runtime.off_loop(lambda: export.send(
                                runtime.get().ctx, report.id, str(peer.value), current.actor))
                        except Exception as exc:
                            components.notify_error(exc)
                            return
                        ui.notify(i18n.t(f"export.send_{result.status}", peer=result.peer),
                                  type="positive" if result.status == "sent" else "warning")

                    ui.button(i18n.t("export.send"), icon="send_to_mobile", on_click=send).props(
                        "no-caps size=lg outline data-testid=export-send")
                else:
                    ui.label(i18n.t("export.no_peers")).classes("radiant-muted")
