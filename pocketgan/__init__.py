"""pocketgan: distil diffusion image editors into tiny GANs with hot-swappable LoRA concepts.

Kept free of heavy imports: ``import pocketgan.runtime`` must not pull in torch.
"""

__version__ = "0.1.0"
