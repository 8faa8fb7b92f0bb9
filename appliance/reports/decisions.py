"""Which flagged AI items of a draft still await the radiologist's explicit decision.

Every item the safety layer flagged (a bare diagnosis it reworded, a sentence it could not
hedge, a confidence out of range, a unit not recognised, ...) needs one before the report can
be signed: a flagged AI finding is accepted, edited or rejected; a flagged impression is kept
as it stands or edited (edited to nothing removes it). Signing with any item undecided is
refused with a 409 problem document (:class:`UndecidedItems`) that lists them."""

from __future__ import annotations

from pydantic import BaseModel

from appliance.errors import Conflict
from appliance.reports.models import ReportContent

#: The item id of the draft's impression (finding ids are ``f1``, ``f2``, ...).
IMPRESSION = "impression"


class Undecided(BaseModel):
    """One flagged item awaiting a decision."""

    id: str  # the finding id, or IMPRESSION
    kind: str  # "finding" or "impression"
    location: str | None = None
    reasons: list[str]  # the stored flag reasons (e.g. reworded, unit_not_recognised)


class UndecidedItems(Conflict):
    """Signing refused: flagged items await a decision. The problem document carries
    ``undecided`` (the item ids) and ``items`` (:class:`Undecided`, as JSON)."""

    title = "Flagged items await a decision"

    def __init__(self, items: list[Undecided]) -> None:
        super().__init__(
            describe(items),
            undecided=[item.id for item in items],
            items=[item.model_dump(mode="json") for item in items],
        )
        self.items = items


def _reasons(flags: list[str]) -> list[str]:
    return list(dict.fromkeys(flags))


def undecided(content: ReportContent) -> list[Undecided]:
    """The flagged AI items of ``content`` still pending, findings first, in report order."""
    found = [
        Undecided(
            id=f.id,
            kind="finding",
            location=f.location,
            reasons=_reasons([flag.reason for flag in f.flags]),
        )
        for f in content.findings
        if f.needs_decision
    ]
    if content.impression_review == "pending":
        found.append(
            Undecided(
                id=IMPRESSION,
                kind="impression",
                reasons=_reasons([flag.reason for flag in content.impression_flags]),
            )
        )
    return found


def undecided_items(content: ReportContent) -> list[str]:
    """The ids of the items :func:`undecided` lists (finding ids and ``impression``)."""
    return [item.id for item in undecided(content)]


def describe(items: list[Undecided]) -> str:
    """The problem document's detail: what to do, then each item with its flags."""
    words = []
    for item in items:
        reasons = ", ".join(reason.replace("_", " ") for reason in item.reasons)
        if item.kind == IMPRESSION:
            words.append(f"the impression ({reasons})")
        else:
            where = f"{item.location}: " if item.location else ""
            words.append(f"finding {item.id} ({where}{reasons})")
    return (
        "Decide on each item the safety layer flagged before signing: accept, edit or reject "
        "a finding; keep or edit the impression. Awaiting a decision: " + "; ".join(words) + "."
    )


def require_decided(content: ReportContent) -> None:
    """:class:`UndecidedItems` (409) when a flagged item of ``content`` is undecided."""
    items = undecided(content)
    if items:
        raise UndecidedItems(items)
