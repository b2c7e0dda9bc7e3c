"""The per-frame stem: a patch embedding, computed once per incoming frame.

The node caches its output in each camera's ring window, so a new frame costs
one stem pass, not sixteen.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchStem(nn.Module):
    """uint8 frames (..., 3, H, W) → patch tokens (..., grid*grid, stem_dim)."""

    def __init__(self, patch: int, stem_dim: int) -> None:
        super().__init__()
        # Two convolutions instead of one linear patch projection: a little local
        # structure (edges, lane markings) before the temporal bottleneck.
        self.conv = nn.Sequential(
            nn.Conv2d(3, stem_dim // 2, kernel_size=patch // 2, stride=patch // 2),
            nn.GELU(),
            nn.Conv2d(stem_dim // 2, stem_dim, kernel_size=2, stride=2),
        )
        self.norm = nn.LayerNorm(stem_dim)
        self.register_buffer("mean", torch.tensor([0.45, 0.45, 0.45]).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        lead = frames.shape[:-3]
        # Compute in the weights' dtype, so fp16/bf16 deployments need no casts around the stem.
        x = frames.reshape(-1, *frames.shape[-3:]).to(self.mean.dtype) / 255.0
        x = self.conv((x - self.mean) / self.std)  # (N, stem_dim, grid, grid)
        x = x.flatten(2).transpose(1, 2)  # (N, grid*grid, stem_dim)
        return self.norm(x).reshape(*lead, x.shape[1], x.shape[2])
