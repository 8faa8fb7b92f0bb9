"""What a report PDF is made from (``PdfInput``, the key image source) and the texts it
prints from values: dates, times, moments, measurements, confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.reports import language
from appliance.reports.models import ReportContent, ReportFinding
from appliance.reports.units import display


@dataclass(frozen=True)
class PdfInput:
    """Everything the PDF shows besides the content."""

    content: ReportContent
    status: str
    version: int
    report_id: str
    digest: str
    signer_name: str | None
    signed_at: str | None
    page_size: str = "A4"
    font_path: Path | None = None


KeyImageSource = Callable[[ReportFinding], bytes | None]


def format_date(value: str | None) -> str:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD."""
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "-"


def format_time(value: str | None) -> str:
    """A DICOM time as HH:MM."""
    if value and len(value) >= 4 and value[:4].isdigit():
        return f"{value[:2]}:{value[2:4]}"
    return value or ""


def format_moment(value: str | None, lang: str = "en") -> str:
    """An ISO 8601 UTC timestamp as "YYYY-MM-DD HH:MM:SS UTC"."""
    if not value:
        return "-"
    return language.text(lang, "pdf.utc", moment=value.replace("T", " ")[:19])


def measurements_text(finding: ReportFinding, lang: str = "en") -> str:
    """The measurements of a finding with their UCUM units as displayed, numbers in the
    report language."""
    return "; ".join(
        f"{m.name}: {language.number(lang, m.value, 6)} {display(m.unit)}".rstrip()
        for m in finding.measurements
    )


def confidence_text(finding: ReportFinding, lang: str = "en") -> str:
    """The confidence as a percentage, "-" when none."""
    if finding.confidence is None:
        return "-"
    return f"{language.number(lang, round(finding.confidence * 100), 0)} %"
