"""Splitting MedGemma's thinking trace (``<unused94>thought ... <unused95>``) from its answer."""

from __future__ import annotations

import re

from ai.parsing.models import THINKING_END, THINKING_START, ThinkingSplit

_THOUGHT_HEADER = re.compile(r"^\s*thought\b[ \t]*\r?\n?", re.IGNORECASE)
_FINAL_ANSWER = re.compile(r"final\s+answer\s*:", re.IGNORECASE)
_JSON_FENCE = re.compile(r"```\s*json", re.IGNORECASE)


def strip_thinking(text: str) -> ThinkingSplit:
    """Drop the thinking trace: keep only what follows the last ``<unused95>``.

    Without an end marker, a ``<unused94>thought`` block is dropped up to the model's final
    answer (a ``Final Answer:`` marker or a fenced json block); with neither, everything after
    ``<unused94>`` is thinking and the answer is empty. Both guesses are reported as a problem.
    """
    end = text.rfind(THINKING_END)
    if end >= 0:
        thinking = text[:end]
        answer = text[end + len(THINKING_END) :]
        if THINKING_START in answer:
            # A new, unterminated thought after the last end marker.
            inner = strip_thinking(answer)
            return ThinkingSplit(
                answer=inner.answer,
                thinking=thinking + inner.thinking,
                stripped=True,
                problem=inner.problem,
            )
        return ThinkingSplit(answer=answer, thinking=thinking, stripped=True)
    start = text.find(THINKING_START)
    if start < 0:
        return ThinkingSplit(answer=text, thinking="", stripped=False)
    before = text[:start]
    block = _THOUGHT_HEADER.sub("", text[start + len(THINKING_START) :], count=1)
    finals = list(_FINAL_ANSWER.finditer(block))
    fence = _JSON_FENCE.search(block)
    if finals:
        cut = finals[-1].end()
        problem = (
            "thinking trace has no end marker <unused95>; the answer was taken from its "
            "last 'Final Answer:'"
        )
    elif fence is not None:
        cut = fence.start()
        problem = (
            "thinking trace has no end marker <unused95>; the answer was taken from its "
            "first fenced json block"
        )
    else:
        return ThinkingSplit(
            answer=before,
            thinking=block,
            stripped=True,
            problem="thinking trace has no end marker <unused95> and no answer after it",
        )
    return ThinkingSplit(
        answer=before + block[cut:], thinking=block[:cut], stripped=True, problem=problem
    )
