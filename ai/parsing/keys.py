"""The key names a model may use for each answer field, and key normalization."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: A value that is only a ``<placeholder>``: the model echoed the prompt's schema.
PLACEHOLDER = re.compile(r"^\s*<[^<>]{1,80}>\s*$")

DESCRIPTION_KEYS = ("description", "finding", "observation", "text")
LOCATION_KEYS = ("location", "anatomical_location", "anatomic_location", "anatomy", "site")
IMPRESSION_KEYS = ("impression", "hedged_impression", "interpretation")
CONFIDENCE_KEYS = ("confidence", "confidence_score", "probability", "certainty")
MEASUREMENT_KEYS = ("measurements", "measurement", "size")
SLICE_KEYS = ("slice", "slice_number", "slice_index", "image_number")
CHANGE_KEYS = ("change", "interval_change", "status")
URGENCY_KEYS = ("urgency", "triage", "priority")
URGENCY_REASON_KEYS = ("urgency_reason", "triage_reason", "priority_reason")
OVERALL_KEYS = ("overall_impression", "overall", "summary", "conclusion", "impression")


def norm_key(key: str) -> str:
    return re.sub(r"[\s\-]+", "_", key.strip().lower())


def normalized(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {norm_key(str(key)): value for key, value in mapping.items()}


def first(keys: Mapping[str, Any], names: Iterable[str]) -> tuple[str, Any] | None:
    for name in names:
        if name in keys and keys[name] is not None:
            return name, keys[name]
    return None
