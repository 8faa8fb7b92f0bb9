"""Parse a MedGemma answer into structured findings and boxes.

This package only reads structure: it strips the thinking trace, finds the JSON the model wrote,
repairs a few harmless syntax slips (each recorded in ``repairs``) and maps it onto typed
findings. It never interprets, hedges or scores anything (that is :mod:`ai.safety`) and never
creates a finding the model did not state: a missing value stays missing, an empty list stays
empty. When no usable JSON exists, the whole answer is kept as ONE narrative finding and the
result is marked ``needs_review`` with the reason.

Model answer format (Google's MedGemma notebooks):

- MedGemma 1.5 may think before answering, even unprompted: ``<unused94>thought\\n...`` then
  ``<unused95>`` then the answer. Everything up to the last ``<unused95>`` is dropped.
- Localization answers are a fenced json list ``[{"box_2d": [y0, x0, y1, x1], "label": ...}]``
  with coordinates normalized to 0..1000 of the padded square image.

Modules: :mod:`.models` (the result), :mod:`.thinking`, :mod:`.json_text` (finding and repairing
JSON), :mod:`.choose`, :mod:`.keys`, :mod:`.fields`, :mod:`.findings`, :mod:`.answer`.
"""

from ai.parsing.answer import parse_answer
from ai.parsing.models import (
    BOX_SCALE,
    THINKING_END,
    THINKING_START,
    Box,
    Expect,
    IntervalChange,
    Measurement,
    ParsedAnswer,
    ParsedFinding,
    ThinkingSplit,
    UrgencyLevel,
)
from ai.parsing.thinking import strip_thinking

__all__ = [
    "BOX_SCALE",
    "THINKING_END",
    "THINKING_START",
    "Box",
    "Expect",
    "IntervalChange",
    "Measurement",
    "ParsedAnswer",
    "ParsedFinding",
    "ThinkingSplit",
    "UrgencyLevel",
    "parse_answer",
    "strip_thinking",
]
