"""The flagged AI items of a draft that still await the radiologist's decision, in the screen's
language: listed in the sign dialog (whose Sign stays disabled while any remain) and in the
words of the API's 409 refusal (:class:`appliance.reports.decisions.UndecidedItems`)."""

from __future__ import annotations

from nicegui import ui

from appliance.reports.decisions import IMPRESSION, Undecided, UndecidedItems
from ui import components, i18n


def reasons_words(reasons: list[str]) -> str:
    """Short words for flag reasons (``unit not recognised, confidence out of range``)."""
    words = [
        i18n.t(f"reason.{r if r in components.FLAG_REASONS else 'other'}") for r in reasons
    ]
    return ", ".join(dict.fromkeys(words))


def item_words(item: Undecided) -> str:
    """One undecided item: which finding (or the impression) and what was flagged."""
    reasons = reasons_words(item.reasons)
    if item.kind == IMPRESSION:
        return i18n.t("decision.impression", reasons=reasons)
    return i18n.t("decision.finding", id=item.id, location=item.location or "-",
                  reasons=reasons)


def refusal_words(exc: UndecidedItems) -> str:
    """The 409 refusal to sign, translated: how many items and which."""
    return i18n.plural("decision.refused", len(exc.items),
                       items="; ".join(item_words(item) for item in exc.items))


def listing(items: list[Undecided]) -> None:
    """The undecided items, one line each (shown in the sign dialog)."""
    if not items:
        return
    with ui.column().classes("gap-1").props("data-testid=undecided-list").mark("undecided-list"):
        ui.label(i18n.t("decision.title")).classes("text-body1 text-weight-bold radiant-error")
        for item in items:
            ui.label(item_words(item)).classes("text-body2").props(
                "data-testid=undecided-item").mark(f"undecided-{item.id}")
