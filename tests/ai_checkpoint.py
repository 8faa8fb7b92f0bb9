"""An offline Gemma 3 tokenizer and chat template for random-weight MedGemma-shaped models.

Used by the transformers engine test (a tiny checkpoint) and ``bench/ai.py --random-weights``:
no tokenizer or weights can be downloaded, so both build a real ``GemmaTokenizer`` with Gemma
3's special and control tokens over a small vocabulary; its text says nothing, its structure
(turns, image markers the processor expands to soft tokens) is Gemma 3's.
"""

from __future__ import annotations

import string
from typing import Any

from tokenizers import AddedToken
from transformers import GemmaTokenizer

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
# Gemma 3's control tokens. The thinking markers are registered as special on purpose: that is
# the case in which skip_special_tokens=True would silently delete them.
CONTROL = [
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<unused94>",
    "<unused95>",
]

# Gemma 3's chat template (system text prefixed to the first user turn; images as
# <start_of_image>, which the processor expands to the image's soft tokens).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    '{%- set first_user_prefix = "" -%}'
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- else -%}{{ raise_exception('Invalid content type') }}"
    "{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def offline_tokenizer() -> Any:
    """A Gemma tokenizer built here (byte fallback and printable characters, Gemma 3's
    special and control tokens): no download."""
    vocab: dict[str, int] = {}
    for token in SPECIAL + CONTROL:
        vocab[token] = len(vocab)
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for char in ["\u2581", "\n", *(c for c in string.printable if not c.isspace())]:
        vocab.setdefault(char, len(vocab))
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=[],
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
        image_token="<image_soft_token>",
    )
    tokenizer.add_tokens(
        [AddedToken(token, special=True, normalized=False) for token in CONTROL],
        special_tokens=True,
    )
    return tokenizer
