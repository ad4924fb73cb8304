"""A byte-level CLIP tokenizer written from scratch (no hub download).

CLIP's BPE tokenizer reads a ``vocab.json`` and a ``merges.txt``. With every byte character
in the vocabulary (bare and word-final) and a handful of merges, any instruction tokenizes,
one token per character; the editor's text encoder learns from those.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL = ("<|startoftext|>", "<|endoftext|>")
MERGES = (("t", "h"), ("th", "e</w>"), ("i", "t</w>"))


def byte_characters() -> list[str]:
    """CLIP's byte -> printable-character table (the byte-level BPE alphabet), 256 characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_byte_tokenizer(folder: Path) -> Path:
    """Write ``vocab.json`` + ``merges.txt`` of a byte-level CLIP tokenizer into ``folder``.

    The vocabulary has 2 + 2 x 256 + len(MERGES) entries; ids 0 and 1 are start and end of text.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = byte_characters()
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES), encoding="utf-8")
    return folder


def vocab_size() -> int:
    return len(SPECIAL) + 2 * 256 + len(MERGES)
