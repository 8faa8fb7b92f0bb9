"""Which report controls a role sees: the report policy table the service enforces, and the
section names of a report."""

from __future__ import annotations

from appliance.auth.models import Role
from appliance.export import routes as export_routes
from appliance.reports.policy import POLICY, ReportAction

SECTIONS = ("clinical_indication", "technique", "comparison", "impression", "recommendations",
            "limitations")
CREATORS = POLICY[ReportAction.CREATE_DRAFT]
EDITORS = POLICY[ReportAction.EDIT_DRAFT]
REVIEWERS = POLICY[ReportAction.REVIEW_FINDINGS]
HANDERS = POLICY[ReportAction.HAND_OVER]
SIGNERS = POLICY[ReportAction.SIGN]
AMENDERS = POLICY[ReportAction.ADDENDUM]
EXPORTERS = POLICY[ReportAction.EXPORT]
SENDERS = POLICY[ReportAction.SEND]
# The screen's PDF follows the API's rule for GET /api/export/report/{id}/pdf.
PDF_ROLES: frozenset[Role] = export_routes.Readers.roles
