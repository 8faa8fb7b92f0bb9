"""The model answer of issue 13's acceptance: an impression that cannot be hedged (a diagnosis
in quoted words), a confidence of 1.7, a unit "furlongs" and a bare diagnosis, each on its own
item so that each needs its own decision before signing. The first finding is the definitive
wording of :data:`tests.ai_server.FINDINGS_ANSWER`, which the safety layer rewords too.

Served by the OpenAI-protocol test server (:class:`tests.ai_server.AIServer`) in the API test,
the NiceGUI screen test and the e2e day."""

from __future__ import annotations

import json

#: The finding locations, in answer order (the draft numbers them f1..f4).
DEFINITIVE, BARE, CONFIDENCE, UNIT = (
    "right frontal lobe",
    "left temporal lobe",
    "right maxillary sinus",
    "left frontal lobe",
)
BARE_DIAGNOSIS = "Malignant brain tumour."
QUOTED = "glioma"

FLAGGED = {
    "findings": [
        {
            "description": "This is definitely a malignant mass in the right frontal lobe.",
            "location": DEFINITIVE,
            "impression": "This is a glioblastoma.",
            "confidence": 0.9,
            "measurements": [{"name": "diameter", "value": 23, "unit": "mm"}],
            "slice": 12,
        },
        {"description": BARE_DIAGNOSIS, "location": BARE, "confidence": 0.6},
        {
            "description": "Mucosal thickening may be present in the right maxillary sinus.",
            "location": CONFIDENCE,
            "confidence": 1.7,
        },
        {
            "description": "A small hypodense focus may be present in the left frontal lobe.",
            "location": UNIT,
            "confidence": 0.3,
            "measurements": [{"name": "long axis", "value": 3, "unit": "furlongs"}],
        },
    ],
    "overall_impression": f'It was called "{QUOTED}".',
}
ANSWER = "```json\n" + json.dumps(FLAGGED) + "\n```"

#: The flag each item must carry (finding location or "impression" -> stored reason).
EXPECTED_FLAGS = {
    DEFINITIVE: "reworded",
    BARE: "reworded",
    CONFIDENCE: "confidence_out_of_range",
    UNIT: "unit_not_recognised",
    "impression": "quotation",
}
