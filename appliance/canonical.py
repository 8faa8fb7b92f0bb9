"""Canonical JSON: the one byte form that hash chains and signatures are computed over.

Sorted keys, no insignificant whitespace, UTF-8 without ASCII escaping. Changing it would break
every stored audit and report-version hash, so it is defined once, here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 bytes of a JSON-serialisable value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def fields_digest(row: dict[str, Any], fields: Iterable[str]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``row`` restricted to ``fields`` (missing: null)."""
    return hashlib.sha256(canonical_json({name: row.get(name) for name in fields})).hexdigest()
