"""Fonts of the report PDF: the embedded main font (DejaVu Sans, else Helvetica), the fallback
fonts for scripts it lacks (CJK), and text cut into runs by font coverage for paragraphs,
canvas strings, widths and line wrapping.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as pdfcanvas

from appliance.export.fontruns import Coverage, split_runs
from appliance.logs import get_logger

log = get_logger("radiant.export")


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
_FALLBACKS: list[str] | None = None  # registered fallback font names, once looked for
_COVERAGE: dict[str, Coverage] = {}
_WARNED: set[int] = set()


@dataclass(frozen=True)
class Fonts:
    """The registered main font (regular and bold), whether it is embedded, and the fallbacks."""

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
    """Width of ``text`` in points, each run in the font that covers it."""
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


def wrap(text: str, font: Fonts, size: float, width: float) -> list[str]:
    """``text`` cut into lines no wider than ``width`` points."""
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
