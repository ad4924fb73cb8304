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
        q = self.to_q(x).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.to_k(context).reshape(b, m, self.heads, self.head_dim).transpose(1, 2)
        v = self.to_v(context).reshape(b, m, self.heads, self.head_dim).transpose(1, 2)
        weights = torch.softmax(torch.matmul(q * self.scale, k.transpose(-1, -2)), dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.to_out(out)


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
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, token_dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = x.flatten(2).transpose(1, 2)
        normed = self.norm1(seq)
        seq = seq + self.self_attn(normed, normed)
        seq = seq + self.cross_attn(self.norm2(seq), tokens)
        seq = seq + self.mlp(self.norm3(seq))
        return seq.transpose(1, 2).reshape(b, c, h, w)
