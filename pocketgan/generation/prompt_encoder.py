"""The prompt encoder: a hashed bag of words with a table learned jointly with the teacher.

A prompt becomes ``TOKENS`` ids: its lower-cased words (runs of letters, digits, ``-`` and
``'``) in order, each hashed by 32-bit FNV-1a of its UTF-8 bytes into ``buckets`` rows
(``1 + hash % buckets``), padded with row 0 and cut after ``TOKENS`` words. The states are
the table's rows: (TOKENS, width) per prompt. The empty prompt (classifier-free guidance's
unconditional branch) is all padding.

Why this and not a transformer text encoder: the emoji prompts are short bags of content
words ("grinning face", "flag fr", "woman technologist medium skin tone"), where order adds
little, and the UNet's cross-attention already mixes the words. A table lookup is also
what every runtime can do without running a second model: the Python runtime, the web
demo, Kotlin and Swift hash and index the same table that ships in the bundle
(``prompt_table.safetensors``), so a prompt costs nothing next to the generator.
"""

from __future__ import annotations

import numpy as np

# The hashing itself lives in the runtime (torch-free, installed as pocketgan.runtime), which
# the bundle's readers use; training and the runtime hash prompts with the same code.
from pocketgan.runtime.prompt_hashing import TOKENS, fnv1a32, prompt_ids, prompt_states, words  # noqa: F401


def _torch_encoder():
    import torch
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.models.modeling_utils import ModelMixin

    class HashedPromptEncoder(ModelMixin, ConfigMixin):
        """``forward(ids)`` int64 (B, tokens) -> float32 (B, tokens, width): the table's rows.

        A diffusers model, so the teacher's pipeline folder saves and loads it like its UNet.
        """

        @register_to_config
        def __init__(self, buckets: int = 4096, width: int = 128, tokens: int = TOKENS) -> None:
            super().__init__()
            if buckets < 1 or width < 1 or tokens < 1:
                raise ValueError(f"buckets, width and tokens must be positive, got {buckets}, {width}, {tokens}")
            self.table = torch.nn.Embedding(buckets + 1, width)
            torch.nn.init.normal_(self.table.weight, std=1.0)

        def ids(self, prompts: list[str]) -> torch.Tensor:
            return torch.from_numpy(np.stack([prompt_ids(p, self.config.buckets, self.config.tokens) for p in prompts]))

        def encode(self, prompts: list[str]) -> torch.Tensor:
            return self(self.ids(prompts).to(self.table.weight.device))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.table(ids)

    return HashedPromptEncoder


def __getattr__(name: str):
    # torch and diffusers load only when the trainable encoder is asked for: the runtime
    # imports this module for prompt_ids / prompt_states alone
    if name == "HashedPromptEncoder":
        cls = _torch_encoder()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
