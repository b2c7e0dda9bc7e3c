"""The temporal bottleneck: 16 frames of patch tokens → one latent of tokens per camera.

A GRU shared by every token position runs over the window (oldest to newest),
so each latent token summarises how its patch of the image changed: 16x fewer
tokens reach the transformer than 16 frames would bring. A token GRU, not a
ConvGRU: at 64x64 a ConvGRU over 16 frames cost ~180 ms here, too slow to redo
at 10 Hz, while the transformer after it mixes space anyway.
"""

from __future__ import annotations

import torch
from torch import nn


class TemporalBottleneck(nn.Module):
    """(B, C, T, N, stem_dim) → (B, C*N, dim) latent tokens, with positions added."""

    def __init__(self, stem_dim: int, dim: int, tokens_per_camera: int, cameras: int) -> None:
        super().__init__()
        self.proj = nn.Linear(stem_dim, dim)
        # The difference to the previous frame is the motion cue; the GRU sees both.
        self.gru = nn.GRU(input_size=2 * dim, hidden_size=dim, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.position = nn.Parameter(torch.zeros(1, cameras, tokens_per_camera, dim))
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, stem_tokens: torch.Tensor) -> torch.Tensor:
        b, c, t, n, _ = stem_tokens.shape
        x = self.proj(stem_tokens)  # (B, C, T, N, dim)
        delta = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:] - x[:, :, :-1]], dim=2)
        seq = torch.cat([x, delta], dim=-1).permute(0, 1, 3, 2, 4).reshape(b * c * n, t, -1)
        _, last = self.gru(seq)  # (1, B*C*N, dim): the state after the newest frame
        latent = last[0].reshape(b, c, n, -1) + self.position
        return self.norm(latent).reshape(b, c * n, -1)
