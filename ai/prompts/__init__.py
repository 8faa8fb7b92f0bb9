"""Versioned prompt templates and the builder that turns them into ordered prompt parts.

Templates are data files ``ai/prompts/<id>.v<version>.toml`` (``primary``, ``comparison``,
``focused``). The builder returns a :class:`PromptRequest`: the template's id, version and
SHA-256 (for the audit trail) and the parts of ONE user turn, in the order MedGemma was trained
on (Google's CT notebook): the instruction first, then each image followed by its text label
(``SLICE n`` for CT/MR volumes; a radiograph alone), then the question LAST.

User text (clinical indication, body part, focused target) is data, never instructions: it is
NFKC-normalized, stripped of control and format characters (newlines, zero-width and bidi
marks), its angle brackets and backticks are replaced so it cannot spell a Gemma control token
(``<end_of_turn>``) or a code fence, it is cut to a maximum length and inserted as one JSON
string literal (inner quotes escaped), so it cannot leave its quotes.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ai.prompts.series import (
    SelectionRule,
    SeriesInfo,
    SeriesSelection,
    load_selection_rules,
    orientation_of,
    select_series,
)

__all__ = [
    "MAX_BODY_PART_CHARS",
    "MAX_INDICATION_CHARS",
    "MAX_TARGET_CHARS",
    "MAX_VOLUME_IMAGES",
    "ImagePart",
    "PromptPart",
    "PromptRequest",
    "PromptTemplate",
    "SelectionRule",
    "SeriesInfo",
    "SeriesSelection",
    "TextPart",
    "available_templates",
    "build_comparison",
    "build_focused",
    "build_primary",
    "load_selection_rules",
    "load_template",
    "orientation_of",
    "quote_user_text",
    "select_series",
]

PROMPTS_DIR = Path(__file__).resolve().parent
#: At most this many slices of a volume go to the model (MedGemma CT notebook: 85).
MAX_VOLUME_IMAGES = 85
#: At most this many radiographs in one request.
MAX_PROJECTION_IMAGES = 4
MAX_INDICATION_CHARS = 500
MAX_BODY_PART_CHARS = 64
MAX_TARGET_CHARS = 120

#: DICOM Modality -> (name in the prompt, volume?)
_MODALITIES: dict[str, tuple[str, bool]] = {
    "CT": ("CT", True),
    "MR": ("MRI", True),
    "CR": ("X-ray", False),
    "DX": ("X-ray", False),
}
_FILE_NAME = re.compile(r"^(?P<id>[a-z][a-z0-9_]*)\.v(?P<version>\d+)\.toml$")
_REQUIRED_KEYS = ("id", "version", "expect", "instruction", "question")

Expect = Literal["findings", "boxes"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextPart(_Frozen):
    """A text piece of the user turn."""

    type: Literal["text"] = "text"
    text: str


class ImagePart(_Frozen):
    """An image placeholder: ``index`` (0-based) into the caller's list of images, per study."""

    type: Literal["image"] = "image"
    index: int
    study: Literal["prior", "current"] | None = None


PromptPart = TextPart | ImagePart


class PromptRequest(_Frozen):
    """The parts of one user turn plus the template identity recorded with every request."""

    template_id: str
    template_version: int
    template_sha256: str
    expect: Expect
    modality: str
    parts: tuple[PromptPart, ...]
    image_count: int
    user_text_truncated: bool = False

    def audit_record(self) -> dict[str, str | int | bool]:
        """What the audit trail keeps about the prompt (no patient text)."""
        return {
            "template_id": self.template_id,
            "template_version": self.template_version,
            "template_sha256": self.template_sha256,
            "modality": self.modality,
            "image_count": self.image_count,
            "user_text_truncated": self.user_text_truncated,
        }


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """One template file: its id, version, content hash and text fields."""

    id: str
    version: int
    expect: Expect
    sha256: str
    fields: dict[str, str]

    def text(self, name: str) -> Template:
        """A text field as a ``string.Template`` (``$name`` placeholders)."""
        if name not in self.fields:
            raise KeyError(f"prompt template {self.id} v{self.version} has no field {name!r}")
        return Template(self.fields[name])


def available_templates() -> dict[str, tuple[int, ...]]:
    """Template ids with their versions, from the files in this package."""
    found: dict[str, list[int]] = {}
    for path in PROMPTS_DIR.glob("*.toml"):
        match = _FILE_NAME.match(path.name)
        if match:
            found.setdefault(match["id"], []).append(int(match["version"]))
    return {key: tuple(sorted(value)) for key, value in sorted(found.items())}


@cache
def load_template(template_id: str, version: int | None = None) -> PromptTemplate:
    """Load ``<id>.v<version>.toml`` (the highest version when ``version`` is None)."""
    versions = available_templates().get(template_id)
    if not versions:
        raise KeyError(f"no prompt template {template_id!r}")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise KeyError(f"no version {chosen} of prompt template {template_id!r}")
    raw = (PROMPTS_DIR / f"{template_id}.v{chosen}.toml").read_bytes()
    data = tomllib.loads(raw.decode("utf-8"))
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"prompt template {template_id} v{chosen} lacks {', '.join(missing)}")
    if data["id"] != template_id or data["version"] != chosen:
        raise ValueError(f"prompt template file {template_id}.v{chosen} names another id/version")
    if data["expect"] not in ("findings", "boxes"):
        raise ValueError(f"prompt template {template_id} v{chosen}: bad expect {data['expect']!r}")
    fields = {key: value for key, value in data.items() if isinstance(value, str)}
    return PromptTemplate(
        id=template_id,
        version=chosen,
        expect=data["expect"],
        sha256=hashlib.sha256(raw).hexdigest(),
        fields=fields,
    )


def quote_user_text(text: str | None, max_chars: int) -> tuple[str | None, bool]:
    """User text as one quoted JSON string literal (None when empty) and whether it was cut."""
    if text is None:
        return None, False
    cleaned_chars = []
    for char in unicodedata.normalize("NFKC", text):
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            cleaned_chars.append(" ")
        elif char == "<":
            cleaned_chars.append("\u2039")
        elif char == ">":
            cleaned_chars.append("\u203a")
        elif char == "`":
            cleaned_chars.append("'")
        else:
            cleaned_chars.append(char)
    cleaned = re.sub(r"\s+", " ", "".join(cleaned_chars)).strip()
    if not cleaned:
        return None, False
    truncated = len(cleaned) > max_chars
    if truncated:
        cleaned = cleaned[: max_chars - 1].rstrip() + "\u2026"
    return json.dumps(cleaned, ensure_ascii=False), truncated


def _modality(modality: str) -> tuple[str, str, bool]:
    code = modality.strip().upper()
    if code not in _MODALITIES:
        raise ValueError(f"modality {modality!r} is not supported (CT, MR, CR, DX)")
    name, volume = _MODALITIES[code]
    return code, name, volume


def _count(count: int, volume: bool, what: str) -> None:
    limit = MAX_VOLUME_IMAGES if volume else MAX_PROJECTION_IMAGES
    if not 1 <= count <= limit:
        raise ValueError(f"{what} must be 1..{limit} images, got {count}")


def _context(body_part: str | None, clinical_indication: str | None) -> tuple[dict[str, str], bool]:
    body, body_cut = quote_user_text(body_part, MAX_BODY_PART_CHARS)
    indication, indication_cut = quote_user_text(clinical_indication, MAX_INDICATION_CHARS)
    values = {
        "body_part": f"the body part {body}" if body else "an unstated body part",
        "indication": indication or "none given.",
    }
    return values, body_cut or indication_cut


def _images(
    template: PromptTemplate,
    count: int,
    volume: bool,
    study: Literal["prior", "current"] | None,
) -> list[PromptPart]:
    parts: list[PromptPart] = []
    for index in range(count):
        parts.append(ImagePart(index=index, study=study))
        values = {"n": str(index + 1), "study": (study or "").upper()}
        if study is None:
            if volume:
                parts.append(TextPart(text=template.text("slice_label").substitute(values)))
        else:
            field = "volume_label" if volume else "projection_label"
            parts.append(TextPart(text=template.text(field).substitute(values)))
    return parts


def build_primary(
    *,
    modality: str,
    image_count: int,
    body_part: str | None = None,
    clinical_indication: str | None = None,
    version: int | None = None,
) -> PromptRequest:
    """One study: instruction, each image (+ ``SLICE n`` for CT/MR), question last."""
    template = load_template("primary", version)
    code, name, volume = _modality(modality)
    _count(image_count, volume, "a study")
    values, truncated = _context(body_part, clinical_indication)
    note_field = "volume_note" if volume else "projection_note"
    values |= {"modality_name": name, "count": str(image_count)}
    values["image_note"] = template.text(note_field).substitute(values)
    parts: list[PromptPart] = [TextPart(text=template.text("instruction").substitute(values))]
    parts.extend(_images(template, image_count, volume, None))
    parts.append(TextPart(text=template.text("question").substitute(values)))
    return PromptRequest(
        template_id=template.id,
        template_version=template.version,
        template_sha256=template.sha256,
        expect=template.expect,
        modality=code,
        parts=tuple(parts),
        image_count=image_count,
        user_text_truncated=truncated,
    )


def build_comparison(
    *,
    modality: str,
    prior_image_count: int,
    current_image_count: int,
    body_part: str | None = None,
    clinical_indication: str | None = None,
    version: int | None = None,
) -> PromptRequest:
    """PRIOR then CURRENT images, each labelled in text; asks for interval change per finding."""
    template = load_template("comparison", version)
    code, name, volume = _modality(modality)
    _count(prior_image_count, volume, "the prior study")
    _count(current_image_count, volume, "the current study")
    values, truncated = _context(body_part, clinical_indication)
    values |= {
        "modality_name": name,
        "prior_count": str(prior_image_count),
        "current_count": str(current_image_count),
    }
    note_field = "volume_note" if volume else "projection_note"
    values["image_note"] = template.text(note_field).substitute(values)
    parts: list[PromptPart] = [TextPart(text=template.text("instruction").substitute(values))]
    parts.append(TextPart(text=template.text("prior_header").substitute(values)))
    parts.extend(_images(template, prior_image_count, volume, "prior"))
    parts.append(TextPart(text=template.text("current_header").substitute(values)))
    parts.extend(_images(template, current_image_count, volume, "current"))
    parts.append(TextPart(text=template.text("question").substitute(values)))
    return PromptRequest(
        template_id=template.id,
        template_version=template.version,
        template_sha256=template.sha256,
        expect=template.expect,
        modality=code,
        parts=tuple(parts),
        image_count=prior_image_count + current_image_count,
        user_text_truncated=truncated,
    )


def build_focused(
    *,
    modality: str,
    target: str,
    body_part: str | None = None,
    clinical_indication: str | None = None,
    version: int | None = None,
) -> PromptRequest:
    """One image (padded to a square): instruction, the image, then the box query last."""
    template = load_template("focused", version)
    code, name, _ = _modality(modality)
    quoted_target, target_cut = quote_user_text(target, MAX_TARGET_CHARS)
    if quoted_target is None:
        raise ValueError("a focused prompt needs a target finding or structure")
    values, truncated = _context(body_part, clinical_indication)
    values |= {"modality_name": name, "target": quoted_target}
    parts: list[PromptPart] = [
        TextPart(text=template.text("instruction").substitute(values)),
        ImagePart(index=0),
        TextPart(text=template.text("question").substitute(values)),
    ]
    return PromptRequest(
        template_id=template.id,
        template_version=template.version,
        template_sha256=template.sha256,
        expect=template.expect,
        modality=code,
        parts=tuple(parts),
        image_count=1,
        user_text_truncated=truncated or target_cut,
    )
