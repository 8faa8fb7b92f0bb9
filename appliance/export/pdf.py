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
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as pdfcanvas
from reportlab.platypus import (
    Flowable,
    Image,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from appliance import __version__
from appliance.export.fontruns import Coverage, split_runs
from appliance.logs import get_logger
from appliance.reports.models import ReportContent, ReportFinding
from appliance.reports.units import display
from appliance.reports.verification import Verification

log = get_logger("radiant.export")

WATERMARK = "AI DRAFT - NOT REVIEWED BY A RADIOLOGIST"
PAGE_SIZES = {"A4": A4, "LETTER": LETTER}
FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)
#: Fonts for characters the main font lacks, first that covers a character wins: (file, index
#: in a TrueType collection). TrueType outlines only: ReportLab cannot embed CFF-based OpenType.
FALLBACK_FONT_CANDIDATES = (
    (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), 0),  # fonts-wqy-microhei
    (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), 0),  # fonts-wqy-zenhei
    (Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"), 0),  # no Hangul
)
#: What the standard Helvetica (WinAnsi) prints.
_LATIN1 = frozenset(range(0x20, 0x7F)) | frozenset(range(0xA0, 0x100))
FALLBACK_NOTE = "Unicode font missing: characters outside Latin-1 may not print."
_LOCK = threading.Lock()
_REGISTERED: dict[Path, tuple[str, str]] = {}
_BOLD_FILES: dict[Path, Path] = {}
_WATERMARKS: dict[tuple[Path | None, int, int], bytes] = {}
_FALLBACKS: list[str] | None = None  # registered fallback font names, once looked for
_COVERAGE: dict[str, Coverage] = {}
_WARNED: set[int] = set()


@dataclass(frozen=True)
class Fonts:
    regular: str
    bold: str
    embedded: bool
    bold_path: Path | None = None
    fallbacks: tuple[str, ...] = ()

    def coverage(self) -> list[Coverage]:
        """The main font then the fallbacks, each with the code points it has glyphs for."""
        return [_coverage_of(name) for name in (self.regular, *self.fallbacks)]


def _coverage_of(name: str) -> Coverage:
    with _LOCK:
        cached = _COVERAGE.get(name)
        if cached is None:
            font = pdfmetrics.getFont(name)
            face = getattr(font, "face", None)
            # A TTFont's character-to-glyph map; the standard fonts print Latin-1.
            covered = face.charToGlyph if face is not None else _LATIN1
            cached = _COVERAGE[name] = (name, covered)
    return cached


def _fallbacks() -> tuple[str, ...]:
    """Register (once) the installed fallback fonts; their names."""
    global _FALLBACKS
    with _LOCK:
        if _FALLBACKS is None:
            names: list[str] = []
            for path, index in FALLBACK_FONT_CANDIDATES:
                if not path.is_file():
                    continue
                name = f"RadiantFallback-{len(names)}"
                try:
                    pdfmetrics.registerFont(TTFont(name, str(path), subfontIndex=index))
                except Exception as exc:  # unreadable or CFF outlines: skip it
                    log.warning("report_fallback_font_unusable", error=type(exc).__name__)
                    continue
                # No bold or italic face: <b>/<i> around a fallback run use the regular one.
                pdfmetrics.registerFontFamily(
                    name, normal=name, bold=name, italic=name, boldItalic=name
                )
                names.append(name)
            _FALLBACKS = names
        return tuple(_FALLBACKS)


def _split(text: str, font: Fonts) -> list[tuple[str, str]]:
    """``text`` as (font name, text) runs by coverage; warns once per uncovered code point."""
    result = split_runs(text, font.coverage())
    if result.missing:
        with _LOCK:
            new = sorted(result.missing - _WARNED)
            _WARNED.update(new)
        for point in new:
            # The code point and its Unicode category only: never the text (PHI).
            log.warning(
                "report_glyph_missing",
                codepoint=f"U+{point:04X}",
                category=unicodedata.category(chr(point)),
            )
    return result.runs


def markup(text: str | None, font: Fonts) -> str:
    """``text`` as Paragraph markup: escaped, runs outside the main font in ``<font name>``,
    newlines as ``<br/>``."""
    parts = []
    for name, run in _split(text or "", font):
        escaped = escape(run).replace("\n", "<br/>")
        parts.append(escaped if name == font.regular else f'<font name="{name}">{escaped}</font>')
    return "".join(parts)


def text_width(text: str, font: Fonts, size: float) -> float:
    return float(sum(pdfmetrics.stringWidth(run, name, size) for name, run in _split(text, font)))


def draw_text(
    canvas: pdfcanvas.Canvas,
    x: float,
    y: float,
    text: str,
    font: Fonts,
    size: float,
    align: str = "left",
) -> None:
    """Draw one line on the canvas, each run in the font that covers it (from ``x`` leftwards
    when ``align`` is ``right``)."""
    runs = _split(text, font)
    if align == "right":
        x -= sum(pdfmetrics.stringWidth(run, name, size) for name, run in runs)
    for name, run in runs:
        canvas.setFont(name, size)
        canvas.drawString(x, y, run)
        x += pdfmetrics.stringWidth(run, name, size)


def fonts(configured: Path | None = None) -> Fonts:
    """Register (once) and return the report font: ``configured``, else DejaVu Sans, else
    Helvetica (flagged ``embedded=False``)."""
    for path in (*((configured,) if configured else ()), *FONT_CANDIDATES):
        if not path.is_file():
            continue
        with _LOCK:
            if path not in _REGISTERED:
                try:
                    name = f"Radiant-{len(_REGISTERED)}"
                    pdfmetrics.registerFont(TTFont(name, str(path)))
                    bold_path = path.with_name(path.stem + "-Bold" + path.suffix)
                    bold = name
                    if bold_path.is_file():
                        bold = f"{name}-Bold"
                        pdfmetrics.registerFont(TTFont(bold, str(bold_path)))
                    pdfmetrics.registerFontFamily(name, normal=name, bold=bold)
                    _REGISTERED[path] = (name, bold)
                    _BOLD_FILES[path] = bold_path if bold_path.is_file() else path
                except Exception as exc:  # an unreadable font file: try the next one
                    log.warning("report_font_unusable", error=type(exc).__name__)
                    continue
            regular, bold = _REGISTERED[path]
        return Fonts(regular, bold, True, _BOLD_FILES[path], _fallbacks())
    log.warning("report_font_missing", searched=[str(p) for p in FONT_CANDIDATES])
    return Fonts("Helvetica", "Helvetica-Bold", False, fallbacks=_fallbacks())


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


def _date(value: str | None) -> str:
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "-"


def _time(value: str | None) -> str:
    if value and len(value) >= 4 and value[:4].isdigit():
        return f"{value[:2]}:{value[2:4]}"
    return value or ""


def _moment(value: str | None) -> str:
    if not value:
        return "-"
    return value.replace("T", " ")[:19] + " UTC"


def measurements_text(finding: ReportFinding) -> str:
    return "; ".join(
        f"{m.name}: {m.value:g} {display(m.unit)}".rstrip() for m in finding.measurements
    )


def confidence_text(finding: ReportFinding) -> str:
    return f"{finding.confidence * 100:.0f} %" if finding.confidence is not None else "-"


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


class _Styles:
    def __init__(self, font: Fonts) -> None:
        self.font = font
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


def _section(styles: _Styles, title: str, text: str | None) -> list[Flowable]:
    return [
        Paragraph(styles.m(title), styles.heading),
        Paragraph(styles.m(text) if text else "<i>None.</i>", styles.body),
    ]


def _header_table(styles: _Styles, data: PdfInput) -> Table:
    h = data.content.header
    sex = {"M": "Male", "F": "Female", "O": "Other"}.get(h.sex or "", "-")
    cells = [
        ("Patient", h.patient_name or "-", "MRN", h.mrn),
        ("Birth date", h.birth_date or "-", "Sex", sex),
        ("Exam", h.exam or "-", "Accession", h.accession_number or "-"),
        (
            "Study date",
            f"{_date(h.study_date)} {_time(h.study_time)}".strip(),
            "Modalities",
            ", ".join(h.modalities) or "-",
        ),
        ("Referring", h.referring_physician or "-", "Report", f"{data.status}, v{data.version}"),
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
    table = Table(rows, colWidths=[24 * mm, 62 * mm, 24 * mm, None])
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


def _findings_table(styles: _Styles, findings: list[ReportFinding]) -> Flowable:
    if not findings:
        return Paragraph("<i>No findings recorded.</i>", styles.body)
    head = ["#", "Location", "Finding", "Conf.", "Measurements"]
    rows: list[list[Any]] = [[Paragraph(t, styles.label) for t in head]]
    for number, f in enumerate(findings, 1):
        text = styles.m(f.text)
        if f.impression and f.impression != f.text:
            text += f"<br/><i>{styles.m(f.impression)}</i>"
        source = "AI" if f.source == "ai" else "Radiologist"
        rows.append(
            [
                Paragraph(str(number), styles.cell),
                Paragraph(styles.m(f.location or "-"), styles.cell),
                Paragraph(
                    f"{text}<br/><font size=7>{source}, {f.review_state}</font>", styles.cell
                ),
                Paragraph(confidence_text(f), styles.cell),
                Paragraph(styles.m(measurements_text(f) or "-"), styles.cell),
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


def _key_images(
    styles: _Styles, findings: list[ReportFinding], source: KeyImageSource
) -> list[Flowable]:
    cells: list[Any] = []
    for number, finding in enumerate(findings, 1):
        if finding.key_image is None:
            continue
        png = source(finding)
        image = finding.key_image
        where = (f"image {image.slice_index + 1}" if image.slice_index is not None else "image") + (
            f" (instance {image.instance_number})" if image.instance_number is not None else ""
        )
        caption = f"Finding {number}: {where}"
        if png is None:
            cells.append(Paragraph(styles.m(caption + ": image not available"), styles.small))
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
    return [Paragraph("Key images", styles.heading), grid]


def _signature(styles: _Styles, data: PdfInput) -> list[Flowable]:
    if data.status in ("final", "amended"):
        text = (
            f"Electronically signed by <b>{styles.m(data.signer_name or 'unknown')}</b> "
            f"on {styles.m(_moment(data.signed_at))}."
        )
        if data.status == "amended":
            text += " Amended after signature: see addenda."
    else:
        text = (
            "<b>Not signed.</b> Preliminary report: the findings have not been reviewed and "
            "signed by a radiologist."
        )
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
    return [Paragraph("Signature", styles.heading), block]


def _provenance(styles: _Styles, data: PdfInput) -> Paragraph:
    p = data.content.provenance
    parts = [f"Report {data.report_id}, version {data.version}, SHA-256 {data.digest[:16]}..."]
    if p is not None:
        parts.append(
            f"AI: {p.model_id or '-'} {p.model_revision or ''} via {p.engine or '-'}, "
            f"prompt {p.prompt_id or '-'} {p.prompt_version or ''}, analysis {p.analysis_id}"
        )
    parts.append(f"RadiantAI {__version__}")
    return Paragraph(styles.m(" | ".join(parts)), styles.small)


def _page_decorator(data: PdfInput, font: Fonts) -> Callable[[pdfcanvas.Canvas, Any], None]:
    h = data.content.header
    draft = data.status == "draft"
    verification = Verification.of(data.status, data.signer_name, data.signed_at)
    # Signed: who verified it and when, never "UNVERIFIED until signed".
    disclaimer = verification.notice(data.content.disclaimer, _moment(data.signed_at))
    footer_lines: list[str] = []
    if disclaimer:
        footer_lines.append(disclaimer)
    if not font.embedded:
        footer_lines.append(FALLBACK_NOTE)

    def decorate(canvas: pdfcanvas.Canvas, doc: Any) -> None:
        width, height = doc.pagesize
        canvas.saveState()
        if draft:
            # The diagonal mark is a picture (it would scramble extracted text); the banner
            # above the header is text.
            mark = ImageReader(io.BytesIO(_watermark_png(font, int(width), int(height))))
            canvas.drawImage(mark, 0, 0, width=width, height=height, mask="auto")
            canvas.setFillColor(colors.HexColor("#c1121f"))
            canvas.setFont(font.bold, 10)
            canvas.drawCentredString(width / 2, height - 10 * mm, WATERMARK)
        canvas.setFillColor(colors.HexColor("#343a40"))
        when = _date(h.study_date) if h.study_date else ""
        who = f"{h.patient_name or '-'}  |  MRN {h.mrn}  |  {h.exam or ''} {when}".strip()
        draw_text(canvas, doc.leftMargin, height - 15 * mm, who[:140], font, 8)
        draw_text(
            canvas, width - doc.rightMargin, height - 15 * mm, h.facility[:60], font, 8, "right"
        )
        canvas.setStrokeColor(colors.HexColor("#adb5bd"))
        canvas.line(doc.leftMargin, height - 16.5 * mm, width - doc.rightMargin, height - 16.5 * mm)
        canvas.line(doc.leftMargin, 17 * mm, width - doc.rightMargin, 17 * mm)
        y = 13.5 * mm
        for line in footer_lines:
            for part in _wrap(line, font, 7, width - doc.leftMargin - doc.rightMargin):
                draw_text(canvas, doc.leftMargin, y, part, font, 7)
                y -= 3.2 * mm
        canvas.restoreState()

    return decorate


def _watermark_png(font: Fonts, width: int, height: int) -> bytes:
    """The diagonal watermark as a transparent PNG of the page's size (2 px per point)."""
    key = (font.bold_path, width, height)
    with _LOCK:
        cached = _WATERMARKS.get(key)
    if cached is not None:
        return cached
    scale = 2
    size = int(min(width, height) * scale * 0.05)
    face: ImageFont.FreeTypeFont | ImageFont.ImageFont
    try:
        face = (
            ImageFont.truetype(str(font.bold_path), size)
            if font.bold_path
            else ImageFont.load_default(size)
        )
    except OSError:
        face = ImageFont.load_default(size)
    box = face.getbbox(WATERMARK)
    text = PILImage.new("RGBA", (int(box[2] - box[0]) + 20, int(box[3] - box[1]) + 20))
    ImageDraw.Draw(text).text(
        (10 - box[0], 10 - box[1]), WATERMARK, font=face, fill=(217, 26, 26, 40)
    )
    rotated = text.rotate(45, expand=True, resample=PILImage.Resampling.BICUBIC)
    page = PILImage.new("RGBA", (width * scale, height * scale))
    page.alpha_composite(
        rotated,
        (max(0, (page.width - rotated.width) // 2), max(0, (page.height - rotated.height) // 2)),
    )
    out = io.BytesIO()
    page.save(out, format="PNG", optimize=True)
    data = out.getvalue()
    with _LOCK:
        _WATERMARKS[key] = data
    return data


def _wrap(text: str, font: Fonts, size: float, width: float) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        probe = f"{line} {word}".strip()
        if text_width(probe, font, size) <= width or not line:
            line = probe
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def _numbered_canvas(font: Fonts) -> type[pdfcanvas.Canvas]:
    class NumberedCanvas(pdfcanvas.Canvas):  # type: ignore[misc]
        """Holds pages back until the end to print ``Page n of N`` on each."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if not kwargs.get("initialFontName"):
                kwargs["initialFontName"] = font.regular
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                width = self._pagesize[0]
                self.setFont(font.regular, 8)
                self.setFillColor(colors.HexColor("#343a40"))
                self.drawRightString(width - 18 * mm, 6 * mm, f"Page {self._pageNumber} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def render(data: PdfInput, key_image: KeyImageSource) -> bytes:
    """The PDF bytes of one report version."""
    font = fonts(data.font_path)
    styles = _Styles(font)
    content = data.content
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=PAGE_SIZES.get(data.page_size.upper(), A4),
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=22 * mm,
        bottomMargin=25 * mm,
        title=f"Radiology report: {content.header.exam or ''}".strip(),
        author=content.header.facility,
        subject="Radiology report",
        creator=f"RadiantAI {__version__}",
    )
    story: list[Flowable] = [
        Paragraph(styles.m(content.header.facility), styles.title),
        Paragraph(
            styles.m(f"Radiology report: {content.header.exam or 'imaging study'}"), styles.heading
        ),
        _header_table(styles, data),
        Spacer(1, 3 * mm),
    ]
    story += _section(styles, "Clinical indication", content.clinical_indication)
    story += _section(styles, "Technique", content.technique)
    story += _section(styles, "Comparison", content.comparison)
    story += [Paragraph("Findings", styles.heading), _findings_table(styles, content.findings)]
    story += _key_images(styles, content.findings, key_image)
    story += _section(styles, "Impression", content.impression)
    story += _section(styles, "Recommendations", content.recommendations)
    story += _section(styles, "Limitations", content.limitations)
    if content.addenda:
        story.append(Paragraph("Addenda", styles.heading))
        for addendum in content.addenda:
            story.append(
                Paragraph(
                    f"<b>Addendum (version {addendum.version}), "
                    f"{styles.m(addendum.author_name or 'unknown')}, "
                    f"{styles.m(_moment(addendum.created_at))}:</b> {styles.m(addendum.text)}",
                    styles.body,
                )
            )
    story += _signature(styles, data)
    story += [Spacer(1, 4 * mm), _provenance(styles, data)]
    decorate = _page_decorator(data, font)
    doc.build(
        story,
        onFirstPage=decorate,
        onLaterPages=decorate,
        canvasmaker=_numbered_canvas(font),
    )
    return out.getvalue()
