"""What changed between two versions of a report: a list of changed sections and fields.

Findings are matched by their ``id`` (``findings[f2].text``); other lists (addenda,
measurements of a finding, comparison studies) are compared whole or by position.
"""

from __future__ import annotations

from typing import Any

from appliance.reports.history_models import FieldChange
from appliance.reports.models import ReportContent


def _walk(path: str, old: Any, new: Any, out: list[FieldChange]) -> None:
    if old == new:
        return
    if isinstance(old, list) and isinstance(new, list) and path == "addenda":
        # Addenda only grow: name each new one (addenda[1] is the first).
        for index in range(len(old), len(new)):
            out.append(FieldChange(path=f"addenda[{index + 1}]", change="added"))
        if new[: len(old)] != old:
            out.append(FieldChange(path="addenda", change="changed"))
        return
    if old is None or old == [] or old == "":
        if new not in (None, [], ""):
            out.append(FieldChange(path=path, change="added"))
        return
    if new is None or new == [] or new == "":
        out.append(FieldChange(path=path, change="removed"))
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _walk(f"{path}.{key}" if path else key, old.get(key), new.get(key), out)
        return
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and all(isinstance(i, dict) and "id" in i for i in [*old, *new])
    ):
        before = {i["id"]: i for i in old}
        after = {i["id"]: i for i in new}
        for key in [*before, *(k for k in after if k not in before)]:
            _walk(f"{path}[{key}]", before.get(key), after.get(key), out)
        if [k for k in before if k in after] != [k for k in after if k in before]:
            out.append(FieldChange(path=f"{path} (order)", change="changed"))
        return
    out.append(FieldChange(path=path, change="changed"))


def changes(old: ReportContent | None, new: ReportContent) -> list[FieldChange]:
    """Changes from ``old`` to ``new``; every non-empty section is ``added`` for version 1."""
    out: list[FieldChange] = []
    _walk("", old.model_dump(mode="json") if old else {}, new.model_dump(mode="json"), out)
    return out
