"""The audit log on the System screen (administrators): filter by action (exact or a prefix
ending in '.') and days, read each row with the account's full name and the patient's MRN
resolved for display (the rows hold ids only; reading is audited ``audit.read``), and download
the filtered range as CSV (audited ``audit.export``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from nicegui import ui

from appliance.audit import display as audit_display
from appliance.audit import export as audit_export
from appliance.audit import service as audit
from appliance.audit.models import DisplayPage
from appliance.errors import InvalidInput
from ui import components, i18n, runtime, session

AUDIT_PAGE = 25


@dataclass(frozen=True)
class AuditQuery:
    """The audit screen's filters: an action (exact or a prefix ending in '.') and days."""

    action: str | None = None
    since: str | None = None  # first day, YYYY-MM-DD, included
    until: str | None = None  # last day, included

    def bounds(self) -> tuple[str | None, str | None]:
        last = None
        if self.until:
            last = (date.fromisoformat(self.until) + timedelta(days=1)).isoformat()
        return self.since or None, last


def _page(user: session.SessionUser, offset: int, query: AuditQuery) -> DisplayPage:
    """A page with names and MRNs resolved for the administrator (audited ``audit.read``)."""
    db = runtime.get().db()
    since, until = query.bounds()
    found = audit.page(db, limit=AUDIT_PAGE, offset=offset, action=query.action,
                       since=since, until=until)  # fmt: skip
    items = audit_display.resolve(db, found.items)
    audit.record(db, user.actor, "audit.read", object_type="audit",
                 detail={"action": query.action, "offset": offset, "rows": len(items)})  # fmt: skip
    return DisplayPage(items=items, total=found.total, limit=found.limit, offset=found.offset)


def _csv(user: session.SessionUser, query: AuditQuery) -> bytes:
    since, until = query.bounds()
    text = audit_export.export_csv(runtime.get().db(), user.actor, action=query.action,
                                   since=since, until=until)  # fmt: skip
    return text.encode("utf-8")



def viewer(user: session.SessionUser) -> None:
    state = {"offset": 0}
    with ui.card().classes("radiant-card w-full q-pa-md gap-2"):
        ui.label(i18n.t("system.audit")).classes("text-h6")
        with ui.row().classes("items-center gap-2"):
            action = ui.input(i18n.t("system.audit_filter")).props("outlined clearable").classes(
                "w-72")
            since = ui.input(i18n.t("system.audit_since")).props("outlined type=date clearable")
            until = ui.input(i18n.t("system.audit_until")).props("outlined type=date clearable")
        with ui.row().classes("items-center gap-2"):
            older = ui.button(i18n.t("system.older"), icon="chevron_left").props("no-caps outline")
            newer = ui.button(i18n.t("system.newer"), icon="chevron_right").props(
                "no-caps outline")
            download = ui.button(i18n.t("system.audit_export"), icon="download").props(
                "no-caps outline")
            info = ui.label().classes("radiant-muted")
        message = ui.label().classes("radiant-error").props("role=alert")
        columns = [
            {"name": "ts", "label": i18n.t("audit.time"), "field": "ts", "align": "left"},
            {"name": "actor", "label": i18n.t("audit.actor"), "field": "actor", "align": "left"},
            {"name": "action", "label": i18n.t("audit.action"), "field": "action",
             "align": "left"},
            {"name": "object", "label": i18n.t("audit.object"), "field": "object",
             "align": "left"},
            {"name": "mrn", "label": i18n.t("audit.mrn"), "field": "mrn", "align": "left"},
            {"name": "outcome", "label": i18n.t("audit.outcome"), "field": "outcome",
             "align": "left"},
        ]
        table = ui.table(columns=columns, rows=[], row_key="id").classes("w-full").props(
            "dense dark flat hide-pagination :rows-per-page-options=[0]").mark("audit-table")

    def query() -> AuditQuery:
        return AuditQuery(action=str(action.value or "").strip() or None,
                          since=str(since.value or "") or None,
                          until=str(until.value or "") or None)  # fmt: skip

    async def show() -> None:
        if session.require(session.ADMIN) is None:
            components.refuse()
            return
        found = await runtime.off_loop(lambda: _page(user, state["offset"], query()))
        table.rows = [
            {"id": e.id, "ts": e.ts[:19].replace("T", " "),
             "actor": f"{e.actor_name} ({e.actor})" if e.actor_name else e.actor,
             "action": e.action,
             "object": f"{e.object_type or ''} {e.object_id or ''}".strip(),
             "mrn": e.mrn or "", "outcome": e.outcome}
            for e in found.items
        ]  # fmt: skip
        table.update()
        info.set_text(i18n.t("system.audit_range", first=found.offset + 1 if found.items else 0,
                             last=found.offset + len(found.items), total=found.total))

    async def page(delta: int) -> None:
        state["offset"] = max(0, state["offset"] + delta)
        await show()

    async def export_csv() -> None:
        if session.require(session.ADMIN) is None:
            components.refuse()
            return
        wanted = query()
        try:
            data = await runtime.off_loop(lambda: _csv(user, wanted))
        except InvalidInput as exc:
            message.set_text(i18n.t("system.audit_export_too_large", rows=exc.extra.get("rows"),
                                    limit=exc.extra.get("limit")))
            return
        message.set_text("")
        ui.download.content(data, f"audit-{wanted.since or 'start'}-{wanted.until or 'now'}.csv",
                            "text/csv")  # fmt: skip

    older.on_click(lambda: page(AUDIT_PAGE))
    newer.on_click(lambda: page(-AUDIT_PAGE))
    download.on_click(export_csv)
    for control in (action, since, until):
        control.on_value_change(lambda: page(-state["offset"]))
    ui.timer(0.01, show, once=True)
