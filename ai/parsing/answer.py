"""parse_answer: one model answer to a :class:`~ai.parsing.models.ParsedAnswer`."""

from __future__ import annotations

import re

from ai.parsing.choose import pick
from ai.parsing.findings import box_items, narrative, read_boxes, read_findings_doc, read_urgency
from ai.parsing.json_text import json_candidates
from ai.parsing.models import (
    THINKING_END,
    THINKING_START,
    Box,
    Expect,
    Notes,
    ParsedAnswer,
    ParsedFinding,
)
from ai.parsing.thinking import strip_thinking

#: Gemma chat-template tokens that may trail an answer decoded without skipping special tokens.
_CONTROL_TOKENS = re.compile(r"<end_of_turn>|<start_of_turn>(?:model|user)?|<eos>|<bos>|<pad>")


def parse_answer(
    text: str, *, expect: Expect = "findings", slice_count: int | None = None
) -> ParsedAnswer:
    """Parse one model answer.

    ``expect`` names the answer the prompt asked for: ``findings`` (primary and comparison
    prompts) or ``boxes`` (focused prompt). ``slice_count`` is the number of images sent, so a
    slice number outside 1..slice_count is rejected instead of trusted.
    """
    notes = Notes()
    split = strip_thinking(text)
    if split.problem:
        notes.problem(split.problem)
    answer = _CONTROL_TOKENS.sub("", split.answer)
    if THINKING_START in answer or THINKING_END in answer:
        answer = answer.replace(THINKING_START, "").replace(THINKING_END, "")
    answer = answer.strip()

    candidates, unclosed = json_candidates(answer, notes)
    findings_doc = pick(candidates, "findings", notes)
    boxes_doc = pick(candidates, "boxes", notes)

    findings: list[ParsedFinding] = []
    boxes: list[Box] = []
    overall: str | None = None
    if findings_doc is not None:
        findings, overall, inner_boxes = read_findings_doc(findings_doc, notes, slice_count)
        boxes.extend(inner_boxes)
    if boxes_doc is not None:
        boxes.extend(read_boxes(box_items(boxes_doc), notes, finding_index=None))

    urgency, urgency_reason, urgency_flag = read_urgency(findings_doc, expect)
    expected_doc = findings_doc if expect == "findings" else boxes_doc
    if expected_doc is None:
        if unclosed is not None:
            notes.problem(f"JSON block at character {unclosed} is never closed (answer cut short?)")
        findings = narrative(answer, notes, expect)
    return ParsedAnswer(
        findings=tuple(findings),
        overall_impression=overall,
        boxes=tuple(boxes),
        needs_review=bool(notes.problems),
        problems=tuple(notes.problems),
        repairs=tuple(notes.repairs),
        thinking_stripped=split.stripped,
        answer_text=answer,
        raw_text=text,
        urgency=urgency,
        urgency_reason=urgency_reason,
        urgency_flag=urgency_flag,
    )
