"""Multi-head attention and the transformer block, written with plain ops.

Plain Linear + matmul + softmax (not ``nn.MultiheadAttention``) because that is what
converts cleanly to Core ML, delegates fully to XNNPACK and keeps PEFT's LoRA targets
(``to_q``/``to_k``/``to_v``/``to_out``) visible as ordinary Linear layers.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Scaled dot-product attention.

    Args:
        dim: channels of the query sequence.
        context_dim: channels of the key/value sequence (``dim`` for self-attention).
        heads: number of heads; ``dim`` must be divisible by it.
    """

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(context_dim, dim)
        self.to_v = nn.Linear(context_dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: (B, N, dim), context: (B, M, context_dim) -> (B, N, dim)."""
        b, n, _ = x.shape
        m = context.shape[1]
        h, d = self.heads, self.head_dim
        # heads folded into the batch: 3-D bmm, which XNNPACK delegates as is (a 4-D
        # matmul lowers to expand + bmm, and expand_copy is not delegated)
        q = self.to_q(x).reshape(b, n, h, d).transpose(1, 2).reshape(b * h, n, d)
        k = self.to_k(context).reshape(b, m, h, d).transpose(1, 2).reshape(b * h, m, d)
        v = self.to_v(context).reshape(b, m, h, d).transpose(1, 2).reshape(b * h, m, d)
        weights = torch.softmax(torch.bmm(q * self.scale, k.transpose(1, 2)), dim=-1)
        out = torch.bmm(weights, v).reshape(b, h, n, d).transpose(1, 2).reshape(b, n, h * d)
        return self.to_out(out)


class LayerNorm(nn.Module):
    """Layer norm over the last dimension, written with ``linear`` for the two means.

    Same parameters (``weight``, ``bias``) and output as ``nn.LayerNorm(dim)``. Why not
    that: ExecuTorch's XNNPACK partitioner has no layer norm and reduces only over the
    spatial dims of 4-D tensors, so ``native_layer_norm`` stayed on the portable
    kernels and split the program into several delegated pieces (each boundary a layout
    conversion). A mean over channels is a matmul with a constant 1/C row, which every
    backend runs natively.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("mean_row", torch.full((1, dim), 1.0 / dim), persistent=False)
        # eps as the variance linear's bias, not a scalar add: Core ML's fuse_linear_bias
        # pass crashes on a linear followed by a 0-d constant add (coremltools 9.0)
        self.register_buffer("eps_bias", torch.full((1,), eps), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., dim) -> same shape."""
        centered = x - nn.functional.linear(x, self.mean_row)
        variance_eps = nn.functional.linear(centered * centered, self.mean_row, self.eps_bias)
        return centered * torch.rsqrt(variance_eps) * self.weight + self.bias


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Self-attention over image positions, cross-attention to concept tokens, MLP.

    Operates on a feature map: (B, C, H, W) in, (B, C, H, W) out; ``tokens`` is
    (B, T, token_dim), the concept embedding.
    """

    def __init__(self, dim: int, token_dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.self_attn = Attention(dim, dim, heads)
        self.norm2 = LayerNorm(dim)
        self.cross_attn = Attention(dim, token_dim, heads)
        self.norm3 = LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = x.flatten(2).transpose(1, 2)
        normed = self.norm1(seq)
        seq = seq + self.self_attn(normed, normed)
        seq = seq + self.cross_attn(self.norm2(seq), tokens)
        seq = seq + self.mlp(self.norm3(seq))
        return seq.transpose(1, 2).reshape(b, c, h, w)
