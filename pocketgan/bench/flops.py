"""FLOPs of one forward pass (batch 1): 2 x MACs, counted by ``pocketgan.models.cost``
(torch's FLOP counter: convolutions, transposed convolutions, matmuls; elementwise ops,
norms and resizes are not counted, as usual for FLOP figures).

The generator is counted as each concept mode runs it: ``separate`` includes the LoRA
branches (a few percent), ``merged`` is the plain base graph.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


def model_flops(model, size: int) -> int:
    import torch

    from pocketgan.models.cost import count_macs

    return 2 * count_macs(model.eval(), torch.zeros(1, 3, size, size))


@lru_cache(maxsize=None)
def generator_flops(bundle: str | None, mode: str, size: int) -> int:
    """FLOPs of a bundle's generator (``None``: the embedded default) in ``mode`` at ``size``²."""
    from pocketgan.bundle import load_bundle

    b = load_bundle(Path(bundle) if bundle else None)
    return model_flops(b.model_for(b.concept_names[0], mode), size)


@lru_cache(maxsize=None)
def pix2pix_flops(size: int, ngf: int = 64, blocks: int = 9) -> int:
    from pocketgan.models.pix2pix_resnet import Pix2PixResnetGenerator

    return model_flops(Pix2PixResnetGenerator(ngf=ngf, n_blocks=blocks), size)
