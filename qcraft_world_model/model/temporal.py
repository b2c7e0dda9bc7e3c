"""The temporal bottleneck: 16 frames of patch tokens → one latent of tokens per camera.

A GRU shared by every token position runs over the window (oldest to newest),
so each latent token summarises how its patch of the image changed: 16x fewer
tokens reach the transformer than 16 frames would bring. A token GRU, not a
ConvGRU: at 64x64 a ConvGRU over 16 frames cost ~180 ms here, too slow to redo
at 10 Hz, while the transformer after it mixes space anyway.

The recurrence is written out rather than left to ``nn.GRU``: the same
weights and the same maths (PyTorch's GRU equations, float error apart), but
onnxruntime's GRU operator and eager ``nn.GRU`` both ran this shape (512
sequences x 16 steps, 128 wide) about twice as slowly as the written-out steps
on the 2-core AVX2 host (docs/precision.md, session 7), and the GRU was two
thirds of the agents-only window. The input projection is folded into the
gates' input weights: the GRU saw ``[x, x - x_prev]`` with ``x = proj(stem)``,
which is one linear map of ``[stem, stem - stem_prev]`` (the bias cancels in the
difference), half the width of the GRU's own input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        d = self.gru.hidden_size
        seq = stem_tokens.permute(0, 1, 3, 2, 4).reshape(b * c * n, t, -1)  # (S, T, stem_dim)
        # The difference to the previous frame is the motion cue (zero for the oldest frame).
        change = torch.cat([torch.zeros_like(seq[:, :1]), seq[:, 1:] - seq[:, :-1]], dim=1)
        w_now, w_change = self.gru.weight_ih_l0[:, :d], self.gru.weight_ih_l0[:, d:]
        weight = torch.cat([w_now @ self.proj.weight, w_change @ self.proj.weight], dim=1)  # (3d, 2 stem_dim)
        bias = w_now @ self.proj.bias + self.gru.bias_ih_l0
        gates_in = F.linear(torch.cat([seq, change], dim=-1), weight, bias)  # (S, T, 3d): every step's input part
        w_hh, b_hh = self.gru.weight_hh_l0, self.gru.bias_hh_l0
        state = seq.new_zeros(seq.shape[0], d)
        for step in range(t):  # PyTorch's GRU: r, z, n gates in that order
            in_r, in_z, in_n = gates_in[:, step].chunk(3, dim=-1)
            h_r, h_z, h_n = F.linear(state, w_hh, b_hh).chunk(3, dim=-1)
            reset = torch.sigmoid(in_r + h_r)
            update = torch.sigmoid(in_z + h_z)
            candidate = torch.tanh(in_n + reset * h_n)
            state = candidate + update * (state - candidate)
        latent = state.reshape(b, c, n, -1) + self.position  # the state after the newest frame
        return self.norm(latent).reshape(b, c * n, -1)
