"""Reports: draft from an analysis, edits as immutable versions, sign-off, addenda; audited.

Workflow: ``draft`` -> (radiologist signs) ``final`` -> (addendum) ``amended``. Every save
appends a ``report_versions`` row (author, time, content, ``prev_hash``, ``hash``; see
:mod:`appliance.reports.verify`) and an audit row naming the version and its hash; rows are
never updated (triggers refuse it). A signed report's content is locked: later changes are
addenda appended to the content of a new version, so the signed text stays visible as it was.
Audit rows carry ids, versions and hashes only, never report text or names.

Where each part is: :mod:`~appliance.reports.store` (rows, versions, the response model),
:mod:`~appliance.reports.editing` (draft, edits, addenda), :mod:`~appliance.reports.signoff`
(reviews, hand-over, signing), :mod:`~appliance.reports.reading` (audited reads). This module
is the domain's service API: callers import from here.
"""

from __future__ import annotations

from appliance.reports.editing import create, update
from appliance.reports.reading import for_study, get, versions
from appliance.reports.signoff import (
    IMPRESSION,
    finalize,
    hand_over,
    handed_over,
    review_finding,
    undecided_items,
)
from appliance.reports.store import (
    SIGNED,
    StoredReport,
    append_version,
    latest_for_study,
    load,
    user_name,
    verification_out,
    version_history,
)

__all__ = [
    "IMPRESSION",
    "SIGNED",
    "StoredReport",
    "append_version",
    "create",
    "finalize",
    "for_study",
    "get",
    "hand_over",
    "handed_over",
    "latest_for_study",
    "load",
    "review_finding",
    "undecided_items",
    "update",
    "user_name",
    "verification_out",
    "version_history",
    "versions",
]
