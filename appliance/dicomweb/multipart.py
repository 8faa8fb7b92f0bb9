"""multipart/related messages (RFC 2387) as PS3.18 uses them, and Accept header parsing.

:func:`parse_accept` splits an Accept header into media ranges with their parameters (quoted or
not, as OHIF and dicomweb-client each send them); :func:`encode` writes parts under a random
boundary; :func:`decode` splits a request body into parts (STOW-RS, PS3.18 10.5.1.2).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from appliance.dicomweb.models import Part

MAX_PARTS = 100_000


class MalformedMultipart(ValueError):
    """The body is not the multipart/related message its Content-Type announces."""


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: ``type/subtype`` and its lowercased parameter names."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def quality(self) -> float:
        try:
            return float(self.params.get("q", "1"))
        except ValueError:
            return 0.0


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


def parse_media_type(text: str) -> MediaRange:
    """``type/subtype; a=b; c="d"`` -> MediaRange (names lowercased, quotes removed)."""
    pieces = _split_outside_quotes(text, ";")
    media = pieces[0].strip().lower()
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, _, value = piece.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        if name.strip():
            params[name.strip().lower()] = value
    return MediaRange(media, params)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges of an Accept header by preference (q, then order); ``*/*`` when absent."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(p) for p in _split_outside_quotes(header, ",") if p.strip()]
    ranked = sorted(enumerate(ranges), key=lambda item: (-item[1].quality, item[0]))
    return [r for _, r in ranked if r.quality > 0] or [MediaRange("*/*")]


def new_boundary() -> str:
    return secrets.token_hex(16)


def encode(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body of a multipart/related message, part by part (each part's bytes untouched)."""
    sep = f"--{boundary}\r\n".encode("ascii")
    for part in parts:
        head = f"Content-Type: {part.content_type}\r\n"
        if part.location:
            head += f"Content-Location: {part.location}\r\n"
        yield sep + head.encode("ascii") + b"\r\n"
        yield part.data
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


def content_type(boundary: str, part_type: str, transfer_syntax: str | None = None) -> str:
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


def boundary_of(content_type_header: str | None) -> tuple[str, MediaRange]:
    """The boundary of a multipart/related Content-Type; MalformedMultipart otherwise."""
    media = parse_media_type(content_type_header or "")
    if media.media_type != "multipart/related":
        raise MalformedMultipart("the body must be multipart/related")
    boundary = media.params.get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise MalformedMultipart("the multipart/related Content-Type has no valid boundary")
    return boundary, media


def decode(body: bytes, boundary: str, default_type: str) -> list[Part]:
    """Split ``body`` into its parts. A part without Content-Type takes ``default_type`` (the
    ``type`` parameter of the message, RFC 2387 3.1)."""
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise MalformedMultipart("the body holds no part with the announced boundary")
    parts: list[Part] = []
    position = start + len(delimiter)
    while True:
        if body[position : position + 2] == b"--":
            return parts
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            raise MalformedMultipart("the body ends inside a boundary line")
        head_end = body.find(b"\r\n\r\n", line_end)
        if head_end < 0:
            raise MalformedMultipart("a part's headers never end")
        headers = body[line_end + 2 : head_end] if head_end > line_end else b""
        data_start = head_end + 4
        next_delim = body.find(b"\r\n" + delimiter, data_start)
        if next_delim < 0:
            raise MalformedMultipart("the body ends before the closing boundary")
        part_type = default_type
        location = None
        for raw in headers.split(b"\r\n"):
            name, _, value = raw.decode("latin-1").partition(":")
            if name.strip().lower() == "content-type" and value.strip():
                part_type = value.strip()
            elif name.strip().lower() == "content-location":
                location = value.strip()
        parts.append(Part(part_type, body[data_start:next_delim], location))
        if len(parts) > MAX_PARTS:
            raise MalformedMultipart(f"more than {MAX_PARTS} parts")
        position = next_delim + 2 + len(delimiter)
