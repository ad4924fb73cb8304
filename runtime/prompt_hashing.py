"""Prompts as table rows: the hashed bag of words every generation runtime computes (no torch).

A prompt becomes ``TOKENS`` row ids of the prompt table (``prompt_table.safetensors``,
float32 (buckets + 1, width)):

1. lower-case it (Python's ``str.lower``) and take its words: the runs of ``[a-z0-9'-]``
   (:data:`WORD_PATTERN`), in order; every other character separates words and is dropped
   (``"Red-Apple!"`` -> ``["red-apple"]``, ``"café"`` -> ``["caf"]``);
2. each word's row is ``1 + fnv1a32(utf8(word)) % buckets``; row 0 is padding;
3. keep the first ``TOKENS`` words, pad with row 0 to ``TOKENS``.

The states are those rows of the table, float32 (1, TOKENS, width). A prompt with no word
(``""``, ``"!!!"``) is all padding: the unconditional generation. Words never seen in
training still hash to some row (its learned or random value): no prompt is refused.
The web demo, Kotlin and Swift implement the same three steps
(``docs/bundle-format.md``, "Generation bundles").
"""

from __future__ import annotations

import re

import numpy as np

#: Row ids per prompt (words after the first TOKENS are dropped).
TOKENS = 12
#: The manifest's ``prompts.hash``: 32-bit FNV-1a of the word's UTF-8 bytes.
HASH_NAME = "fnv1a32"
#: The manifest's ``prompts.words``: what counts as a word after lower-casing.
WORD_PATTERN = r"[a-z0-9'\-]+"
_WORD = re.compile(WORD_PATTERN)
_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 0x01000193


def fnv1a32(data: bytes) -> int:
    """32-bit FNV-1a hash of ``data`` (0 <= result < 2^32)."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def words(prompt: str) -> list[str]:
    """The prompt's words, lower-cased, in order."""
    return _WORD.findall(prompt.lower())


def prompt_ids(prompt: str, buckets: int, tokens: int = TOKENS) -> np.ndarray:
    """int64 (tokens,) table rows of ``prompt``: 1 + fnv1a32(word) % buckets per word, then 0s."""
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt is a str, got {type(prompt).__name__}")
    ids = [1 + fnv1a32(w.encode()) % buckets for w in words(prompt)[:tokens]]
    return np.array(ids + [0] * (tokens - len(ids)), dtype=np.int64)


def prompt_states(table: np.ndarray, prompt: str, tokens: int = TOKENS) -> np.ndarray:
    """float32 (1, tokens, width): the rows of ``table`` (buckets + 1, width) for ``prompt``."""
    rows = np.ascontiguousarray(table[prompt_ids(prompt, table.shape[0] - 1, tokens)], dtype=np.float32)
    # reshape, not [None]: numpy gives a new axis stride 0, which ExecuTorch refuses in an input
    return rows.reshape(1, tokens, rows.shape[1])
