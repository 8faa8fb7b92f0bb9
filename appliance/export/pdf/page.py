"""Page furniture of the report PDF: the draft watermark (a picture) and banner, the patient
line, the footer with the disclaimer or verification notice, and ``Page n of N``.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas as pdfcanvas

from appliance.export.pdf.content import PdfInput, format_date, format_moment
from appliance.export.pdf.fonts import FALLBACK_NOTE, Fonts, draw_text, wrap
from appliance.reports import language
from appliance.reports.verification import Verification

#: The English draft watermark (each language's is ``pdf.watermark`` in the report catalog).
WATERMARK = language.text("en", "pdf.watermark")
_LOCK = threading.Lock()
_WATERMARKS: dict[tuple[Path | None, int, int, str], bytes] = {}


def page_decorator(data: PdfInput, font: Fonts) -> Callable[[pdfcanvas.Canvas, Any], None]:
    """What each page gets drawn around its content: watermark and banner while a draft, the
    patient line, the footer notices."""
    h = data.content.header
    lang = data.content.language
    draft = data.status == "draft"
    watermark = language.text(lang, "pdf.watermark")
    verification = Verification.of(data.status, data.signer_name, data.signed_at)
    # Signed: who verified it and when, never "UNVERIFIED until signed".
    disclaimer = verification.notice(
        data.content.disclaimer, format_moment(data.signed_at, lang), lang
    )
    footer_lines: list[str] = []
    if disclaimer:
        footer_lines.append(disclaimer)
    if not font.embedded:
        footer_lines.append(
            FALLBACK_NOTE if lang == "en" else language.text(lang, "pdf.font_fallback")
        )

    def decorate(canvas: pdfcanvas.Canvas, doc: Any) -> None:
        width, height = doc.pagesize
        canvas.saveState()
        if draft:
            # The diagonal mark is a picture (it would scramble extracted text); the banner
            # above the header is text.
            png = _watermark_png(font, int(width), int(height), watermark)
            mark = ImageReader(io.BytesIO(png))
            canvas.drawImage(mark, 0, 0, width=width, height=height, mask="auto")
            canvas.setFillColor(colors.HexColor("#c1121f"))
            canvas.setFont(font.bold, 10)
            canvas.drawCentredString(width / 2, height - 10 * mm, watermark)
        canvas.setFillColor(colors.HexColor("#343a40"))
        when = format_date(h.study_date) if h.study_date else ""
        mrn = language.text(lang, "pdf.mrn")
        who = f"{h.patient_name or '-'}  |  {mrn} {h.mrn}  |  {h.exam or ''} {when}".strip()
        draw_text(canvas, doc.leftMargin, height - 15 * mm, who[:140], font, 8)
        draw_text(
            canvas, width - doc.rightMargin, height - 15 * mm, h.facility[:60], font, 8, "right"
        )
        canvas.setStrokeColor(colors.HexColor("#adb5bd"))
        canvas.line(doc.leftMargin, height - 16.5 * mm, width - doc.rightMargin, height - 16.5 * mm)
        canvas.line(doc.leftMargin, 17 * mm, width - doc.rightMargin, 17 * mm)
        y = 13.5 * mm
        for line in footer_lines:
            for part in wrap(line, font, 7, width - doc.leftMargin - doc.rightMargin):
                draw_text(canvas, doc.leftMargin, y, part, font, 7)
                y -= 3.2 * mm
        canvas.restoreState()

    return decorate


def _watermark_png(font: Fonts, width: int, height: int, text: str = WATERMARK) -> bytes:
    """The diagonal watermark ``text`` as a transparent PNG of the page's size (2 px per
    point)."""
    key = (font.bold_path, width, height, text)
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
    box = face.getbbox(text)
    picture = PILImage.new("RGBA", (int(box[2] - box[0]) + 20, int(box[3] - box[1]) + 20))
    ImageDraw.Draw(picture).text(
        (10 - box[0], 10 - box[1]), text, font=face, fill=(217, 26, 26, 40)
    )
    rotated = picture.rotate(45, expand=True, resample=PILImage.Resampling.BICUBIC)
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


def numbered_canvas(font: Fonts, lang: str = "en") -> type[pdfcanvas.Canvas]:
    """A canvas class that prints ``Page n of N`` (in report language ``lang``) on each page."""

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
                label = language.text(lang, "pdf.page", number=self._pageNumber, total=total)
                self.drawRightString(width - 18 * mm, 6 * mm, label)
                super().showPage()
            super().save()

    return NumberedCanvas
