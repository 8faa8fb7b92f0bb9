"""The report as a PDF (ReportLab): header with patient and study, the ACR sections, a findings
table, key images, the signature block; on every page the patient line, page numbers, the
decision-support disclaimer and, until a radiologist signs, the watermark
``AI DRAFT - NOT REVIEWED BY A RADIOLOGIST``.

Text is set in an embedded TrueType font with wide coverage (DejaVu Sans from Debian's
fonts-dejavu-core: Latin, Greek, Cyrillic...), so names with accents or in other scripts print
as themselves. Without it the PDF falls back to Helvetica (Latin-1 only), says so in its footer
and the log warns ``report_font_missing``.

DejaVu has no CJK glyphs, and ReportLab sets a run of text in one font, so every text run
(paragraph markup and strings drawn on the canvas) is cut by font coverage
(:func:`appliance.export.fontruns.split_runs`): characters the main font lacks go to the first
installed fallback font that has them (WenQuanYi Micro Hei from Debian's fonts-wqy-microhei:
Chinese, Japanese kana and kanji, Korean Hangul). A character no font has prints as a box and
the log warns ``report_glyph_missing`` once with its code point (never the text).
"""

from __future__ import annotations

import io

from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer

from appliance import __version__
from appliance.export.pdf.body import (
    Styles,
    findings_table,
    header_table,
    key_images,
    provenance,
    section,
    signature,
)
from appliance.export.pdf.content import (
    KeyImageSource,
    PdfInput,
    confidence_text,
    format_moment,
    measurements_text,
)
from appliance.export.pdf.fonts import Fonts, draw_text, fonts, markup, text_width
from appliance.export.pdf.page import WATERMARK, numbered_canvas, page_decorator

__all__ = [
    "PAGE_SIZES",
    "WATERMARK",
    "Fonts",
    "KeyImageSource",
    "PdfInput",
    "confidence_text",
    "draw_text",
    "fonts",
    "markup",
    "measurements_text",
    "render",
    "text_width",
]

PAGE_SIZES = {"A4": A4, "LETTER": LETTER}


def render(data: PdfInput, key_image: KeyImageSource) -> bytes:
    """The PDF bytes of one report version."""
    font = fonts(data.font_path)
    content = data.content
    lang = content.language
    styles = Styles(font, lang)
    exam = content.header.exam or styles.t("pdf.imaging_study")
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=PAGE_SIZES.get(data.page_size.upper(), A4),
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=22 * mm,
        bottomMargin=25 * mm,
        title=styles.t("pdf.title", exam=exam),
        author=content.header.facility,
        subject=styles.t("pdf.subject"),
        creator=f"RadiantAI {__version__}",
    )
    story: list[Flowable] = [
        Paragraph(styles.m(content.header.facility), styles.title),
        Paragraph(styles.m(styles.t("pdf.title", exam=exam)), styles.heading),
        header_table(styles, data),
        Spacer(1, 3 * mm),
    ]
    story += section(styles, "clinical_indication", content.clinical_indication)
    story += section(styles, "technique", content.technique)
    story += section(styles, "comparison", content.comparison)
    story += [
        Paragraph(styles.m(styles.t("section.findings")), styles.heading),
        findings_table(styles, content.findings),
    ]
    story += key_images(styles, content.findings, key_image)
    story += section(styles, "impression", content.impression)
    story += section(styles, "recommendations", content.recommendations)
    story += section(styles, "limitations", content.limitations)
    if content.addenda:
        story.append(Paragraph(styles.m(styles.t("section.addenda")), styles.heading))
        for addendum in content.addenda:
            line = styles.t(
                "pdf.addendum",
                version=addendum.version,
                author=addendum.author_name or styles.t("unknown"),
                when=format_moment(addendum.created_at, lang),
            )
            story.append(
                Paragraph(f"<b>{styles.m(line)}</b> {styles.m(addendum.text)}", styles.body)
            )
    story += signature(styles, data)
    story += [Spacer(1, 4 * mm), provenance(styles, data)]
    decorate = page_decorator(data, font)
    doc.build(
        story,
        onFirstPage=decorate,
        onLaterPages=decorate,
        canvasmaker=numbered_canvas(font, lang),
    )
    return out.getvalue()
