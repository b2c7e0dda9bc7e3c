"""The transformer over all cameras' latent tokens and the anchor tokens."""

from __future__ import annotations

import torch
from torch import nn

from qcraft_world_model.model.attention import SparseAttention


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: sparse attention, then an MLP, both residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: int, anchors: int, tokens: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SparseAttention(dim, heads, window, anchors, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.tokens = tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, tokens + anchors, dim), sequence tokens first."""
        h = self.norm1(x)
        seq, anc = self.attn(h[:, : self.tokens], h[:, self.tokens:])
        x = x + torch.cat([seq, anc], dim=1)
        return x + self.mlp(self.norm2(x))


class SparseTransformer(nn.Module):
    """Latent tokens (B, n, dim) → (tokens (B, n, dim), anchors (B, A, dim))."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, window: int, anchors: int,
                 tokens: int) -> None:
        super().__init__()
        self.anchor_embed = nn.Parameter(torch.zeros(1, anchors, dim))
        nn.init.trunc_normal_(self.anchor_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, window, anchors, tokens) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.tokens = tokens

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([tokens, self.anchor_embed.expand(tokens.shape[0], -1, -1)], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, : self.tokens], x[:, self.tokens:]
