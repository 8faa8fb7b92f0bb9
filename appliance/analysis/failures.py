"""Why an analysis failed, as a kind people can act on. The analysis row keeps the technical
reason (``error``) for the log and for support; screens show the kind's sentence, never an
exception name or an address."""

from __future__ import annotations

from typing import Literal

FailureKind = Literal[
    "engine_unreachable",
    "engine_limit",
    "engine_unavailable",
    "no_series",
    "no_prior",
    "images_missing",
    "interrupted",
    "unexpected",
]

# (kind, fragments of the stored reason that identify it), first match wins.
_RULES: tuple[tuple[FailureKind, tuple[str, ...]], ...] = (
    ("engine_unreachable", ("EngineUnreachable", "unreachable", "timed out", "Connection")),
    ("engine_limit", ("EngineLimitError",)),
    ("engine_unavailable", ("EngineUnavailable", "not configured", "no engine", "EngineError")),
    ("no_series", ("fits the selection rules", "has no volume", "is not analysed")),
    ("no_prior", ("no earlier study",)),
    ("images_missing", ("missing from storage", "not kept on this appliance", "file is gone")),
    ("interrupted", ("interrupted", "restart", "shutdown")),
)


def failure_kind(error: str | None) -> FailureKind:
    """The kind of a stored failure reason (``unexpected`` when nothing matches)."""
    text = error or ""
    for kind, fragments in _RULES:
        if any(fragment.lower() in text.lower() for fragment in fragments):
            return kind
    return "unexpected"
