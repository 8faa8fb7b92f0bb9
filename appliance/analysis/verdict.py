"""The safety layer's whole verdict, as stored: per finding (``findings.flags``) every hedge
flag, every rewording and every note (unit not recognised, confidence out of range); per
analysis (``analyses.safety``) the review reasons, the flags of the overall impression and the
parse repairs. Each stored flag is ``{"reason", "phrase", ...}``: ``reason`` is a hedge flag
reason (:data:`ai.hedging.FlagReason`), ``reworded``, ``unit_not_recognised`` or
``confidence_out_of_range``."""

from __future__ import annotations

from typing import Any

from ai.safety import SafeAnalysis, SafeFinding


def finding_flags(finding: SafeFinding) -> list[dict[str, Any]]:
    flags: list[dict[str, Any]] = [f.model_dump(mode="json") for f in finding.flags]
    flags.extend(
        {"reason": "reworded", "phrase": c.original, "replacement": c.replacement}
        for c in finding.changes
    )
    flags.extend(
        {"reason": n.kind, "phrase": n.original, "replacement": n.replacement}
        for n in finding.notes
    )
    return flags


def verdict(safe: SafeAnalysis) -> dict[str, Any]:
    return {
        "review_reasons": list(safe.review_reasons),
        "overall_flags": [f.model_dump(mode="json") for f in safe.overall_flags]
        + [
            {"reason": "reworded", "phrase": c.original, "replacement": c.replacement}
            for c in safe.overall_changes
        ],
        "repairs": list(safe.repairs),
    }
