"""The flowing content of the report PDF: styles, ACR sections, the header and findings
tables, key images with the finding's region outlined, the signature block and provenance.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image as PILImage
from PIL import ImageDraw
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import (
    Flowable,
    Image,
    Paragraph,
    Table,
    TableStyle,
)

from appliance import __version__
from appliance.export.pdf.content import (
    KeyImageSource,
    PdfInput,
    confidence_text,
    format_date,
    format_moment,
    format_time,
    measurements_text,
)
from appliance.export.pdf.fonts import Fonts, markup
from appliance.reports import language
from appliance.reports.models import ReportFinding


def _marked_png(png: bytes, finding: ReportFinding) -> bytes:
    """The key image with the finding's region outlined (when it has one)."""
    if finding.region is None:
        return png
    image = PILImage.open(io.BytesIO(png)).convert("RGB")
    draw = ImageDraw.Draw(image)
    r = finding.region
    width = max(1, round(max(image.size) / 256))
    draw.rectangle((r.col0, r.row0, r.col1, r.row1), outline=(255, 40, 40), width=width)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class Styles:
    """The paragraph styles of the report in its font."""

    def __init__(self, font: Fonts, lang: str = "en") -> None:
        self.font = font
        self.lang = lang
        base = ParagraphStyle("base", fontName=font.regular, fontSize=9.5, leading=12.5)
        self.body = base
        self.small = ParagraphStyle("small", parent=base, fontSize=8, leading=10)
        self.cell = ParagraphStyle("cell", parent=base, fontSize=8.5, leading=10.5)
        self.title = ParagraphStyle(
            "title", parent=base, fontName=font.bold, fontSize=15, leading=19, spaceAfter=2
        )
        self.heading = ParagraphStyle(
            "heading",
            parent=base,
            fontName=font.bold,
            fontSize=11,
            leading=14,
            spaceBefore=8,
            spaceAfter=3,
            keepWithNext=1,
            textColor=colors.HexColor("#1d3557"),
        )
        self.label = ParagraphStyle("label", parent=self.cell, fontName=font.bold)

    def m(self, text: str | None) -> str:
        """``text`` as Paragraph markup, each character in a font that has it."""
        return markup(text, self.font)

    def t(self, key: str, **params: Any) -> str:
        """The report text ``key`` in the report's language (plain text, not markup)."""
        return language.text(self.lang, key, **params)


def section(styles: Styles, name: str, text: str | None) -> list[Flowable]:
    """The section ``name`` (``section.<name>`` in the report catalog), "None." when empty."""
    return [
        Paragraph(styles.m(styles.t(f"section.{name}")), styles.heading),
        Paragraph(styles.m(text) if text else f"<i>{styles.m(styles.t('none'))}</i>", styles.body),
    ]


def header_table(styles: Styles, data: PdfInput) -> Table:
    """The patient and study table under the title."""
    h = data.content.header
    t = styles.t
    sex = t(f"sex.{h.sex}") if h.sex in ("M", "F", "O") else "-"
    state = t("pdf.report_state", status=t(f"status.{data.status}"), version=data.version)
    cells = [
        (t("pdf.patient"), h.patient_name or "-", t("pdf.mrn"), h.mrn),
        (t("pdf.birth_date"), h.birth_date or "-", t("pdf.sex"), sex),
        (t("pdf.exam"), h.exam or "-", t("pdf.accession"), h.accession_number or "-"),
        (
            t("pdf.study_date"),
            f"{format_date(h.study_date)} {format_time(h.study_time)}".strip(),
            t("pdf.modalities"),
            ", ".join(h.modalities) or "-",
        ),
        (t("pdf.referring"), h.referring_physician or "-", t("pdf.report"), state),
    ]
    rows = [
        [
            Paragraph(styles.m(a), styles.label),
            Paragraph(styles.m(b), styles.cell),
            Paragraph(styles.m(c), styles.label),
            Paragraph(styles.m(d), styles.cell),
        ]
        for a, b, c, d in cells
    ]
    # Label columns wide enough for the French labels (Prescripteur, Date de naissance).
    table = Table(rows, colWidths=[29 * mm, 55 * mm, 27 * mm, None])
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), styles.font.regular),
                ("BOX", (0, 0), (-1, -1), 0.6, colors.HexColor("#8d99ae")),
                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#f1f3f6")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    return table


def findings_table(styles: Styles, findings: list[ReportFinding]) -> Flowable:
    """One row per finding: location, text, confidence, measurements, source and review state."""
    t = styles.t
    if not findings:
        return Paragraph(f"<i>{styles.m(t('pdf.no_findings'))}</i>", styles.body)
    head = [
        "#",
        t("pdf.col.location"),
        t("pdf.col.finding"),
        t("pdf.col.confidence"),
        t("pdf.col.measurements"),
    ]
    rows: list[list[Any]] = [[Paragraph(styles.m(h), styles.label) for h in head]]
    for number, f in enumerate(findings, 1):
        text = styles.m(f.text)
        if f.impression and f.impression != f.text:
            text += f"<br/><i>{styles.m(f.impression)}</i>"
        source = t("source.ai") if f.source == "ai" else t("source.radiologist")
        state = t(f"review.{f.review_state}")
        rows.append(
            [
                Paragraph(str(number), styles.cell),
                Paragraph(styles.m(f.location or "-"), styles.cell),
                Paragraph(
                    f"{text}<br/><font size=7>{styles.m(f'{source}, {state}')}</font>",
                    styles.cell,
                ),
                Paragraph(styles.m(confidence_text(f, styles.lang)), styles.cell),
                Paragraph(styles.m(measurements_text(f, styles.lang) or "-"), styles.cell),
            ]
        )
    table = Table(rows, colWidths=[7 * mm, 28 * mm, None, 21 * mm, 38 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), styles.font.regular),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#adb5bd")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dee2e6")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def key_images(
    styles: Styles, findings: list[ReportFinding], source: KeyImageSource
) -> list[Flowable]:
    """The key image of each finding that has one, its region outlined, two per row."""
    cells: list[Any] = []
    for number, finding in enumerate(findings, 1):
        if finding.key_image is None:
            continue
        png = source(finding)
        image = finding.key_image
        t = styles.t
        where = (
            t("pdf.key_image_slice", index=image.slice_index + 1)
            if image.slice_index is not None
            else t("pdf.key_image_any")
        )
        if image.instance_number is not None:
            where += t("pdf.key_image_instance", number=image.instance_number)
        caption = t("pdf.key_image", number=number, where=where)
        if png is None:
            missing = t("pdf.key_image_missing", caption=caption)
            cells.append(Paragraph(styles.m(missing), styles.small))
            continue
        marked = _marked_png(png, finding)
        with PILImage.open(io.BytesIO(marked)) as probe:
            w, h = probe.size
        width = 78 * mm
        height = width * h / w if w else width
        if height > 90 * mm:
            width, height = width * 90 * mm / height, 90 * mm
        cells.append(
            [
                Image(io.BytesIO(marked), width=width, height=height),
                Paragraph(styles.m(caption), styles.small),
            ]
        )
    if not cells:
        return []
    rows = [cells[i : i + 2] + [""] * (2 - len(cells[i : i + 2])) for i in range(0, len(cells), 2)]
    grid = Table(rows, colWidths=[84 * mm, 84 * mm])
    grid.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("FONTNAME", (0, 0), (-1, -1), styles.font.regular),
            ]
        )
    )
    return [Paragraph(styles.m(styles.t("section.key_images")), styles.heading), grid]


def signature(styles: Styles, data: PdfInput) -> list[Flowable]:
    """Who signed and when, or the notice that the report is not signed."""
    t = styles.t
    if data.status in ("final", "amended"):
        # The signer's name in bold: the sentence is cut at its placeholder.
        moment = format_moment(data.signed_at, styles.lang)
        before, _, after = t("pdf.signed_by", name="\x00", moment=moment).partition("\x00")
        signer = data.signer_name or t("unknown")
        text = f"{styles.m(before)}<b>{styles.m(signer)}</b>{styles.m(after)}"
        if data.status == "amended":
            text += " " + styles.m(t("verification.amended"))
    else:
        text = f"<b>{styles.m(t('pdf.not_signed'))}</b> {styles.m(t('pdf.preliminary'))}"
    block = Table([[Paragraph(text, styles.body)]], colWidths=[None])
    block.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), styles.font.regular),
                ("BOX", (0, 0), (-1, -1), 0.8, colors.HexColor("#1d3557")),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    return [Paragraph(styles.m(styles.t("section.signature")), styles.heading), block]


def provenance(styles: Styles, data: PdfInput) -> Paragraph:
    """Report id, version and hash; model, engine, prompt and analysis."""
    p = data.content.provenance
    t = styles.t
    parts = [
        t("pdf.provenance_report", id=data.report_id, version=data.version, digest=data.digest[:16])
    ]
    if p is not None:
        parts.append(
            t(
                "pdf.provenance_ai",
                model=p.model_id or "-",
                revision=p.model_revision or "",
                engine=p.engine or "-",
                prompt=p.prompt_id or "-",
                prompt_version=p.prompt_version or "",
                analysis=p.analysis_id,
            )
        )
    parts.append(f"RadiantAI {__version__}")
    return Paragraph(styles.m(" | ".join(parts)), styles.small)
