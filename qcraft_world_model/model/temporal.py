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

That linear map splits by frame: the input gates of step t are ``P_t - Q_{t-1}``
with ``P = A stem + bias`` and ``Q = B stem`` (``A``, ``B`` the folded weights of
the frame and of its change; ``P_0 - Q_0`` for the oldest frame, whose change is
zero). ``frame_inputs`` computes ``[P, Q]`` for one frame, which streaming does
once per frame as it arrives, and ``recur`` runs the window from them: the
projection was 9 of the agents-only window's 61 ms in onnxruntime (session 9),
redone for the 15 frames each window shares with the one before.
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

    def _input_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A, B, bias) in float32: input gates of step t = A stem_t - B stem_{t-1} + bias (see the module's
        docstring), folded in float32 whatever the dtype the weights are kept in."""
        d = self.gru.hidden_size
        weight_ih, proj = self.gru.weight_ih_l0.float(), self.proj.weight.float()
        w_now, w_change = weight_ih[:, :d], weight_ih[:, d:]
        frame, change = w_now @ proj, w_change @ proj  # (3d, stem_dim) each
        return frame + change, change, w_now @ self.proj.bias.float() + self.gru.bias_ih_l0.float()

    def frame_inputs(self, stem_tokens: torch.Tensor) -> torch.Tensor:
        """(..., N, stem_dim) stem tokens of frames → (..., N, 6 dim) ``[P, Q]`` of each, float32 (the
        difference ``recur`` takes of them would lose digits in half precision)."""
        a, b, bias = self._input_weights()
        return F.linear(stem_tokens.float(), torch.cat([a, b]), torch.cat([bias, torch.zeros_like(bias)]))

    def recur(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, C, T, N, 6 dim) ``frame_inputs`` of the window's frames, oldest first → (B, C*N, dim)."""
        b, c, t, n, _ = inputs.shape
        d = self.gru.hidden_size
        now, before = inputs.split(3 * d, dim=-1)  # P, Q
        # Step 0's change is zero (P_0 - Q_0); every later step's input part is P_t - Q_{t-1}.
        gates_in = torch.cat([now[:, :, :1] - before[:, :, :1], now[:, :, 1:] - before[:, :, :-1]], dim=2)
        w_hh, b_hh = self.gru.weight_hh_l0, self.gru.bias_hh_l0
        gates_in = gates_in.to(w_hh.dtype).permute(0, 1, 3, 2, 4).reshape(b * c * n, t, 3 * d)  # (S, T, 3d)
        state = gates_in.new_zeros(gates_in.shape[0], d)
        for step in range(t):  # PyTorch's GRU: r, z, n gates in that order
            in_r, in_z, in_n = gates_in[:, step].chunk(3, dim=-1)
            h_r, h_z, h_n = F.linear(state, w_hh, b_hh).chunk(3, dim=-1)
            reset = torch.sigmoid(in_r + h_r)
            update = torch.sigmoid(in_z + h_z)
            candidate = torch.tanh(in_n + reset * h_n)
            state = candidate + update * (state - candidate)
        latent = state.reshape(b, c, n, -1) + self.position  # the state after the newest frame
        return self.norm(latent).reshape(b, c * n, -1)

    def forward(self, stem_tokens: torch.Tensor) -> torch.Tensor:
        """(B, C, T, N, stem_dim) → (B, C*N, dim): ``recur`` on every frame's ``frame_inputs``."""
        return self.recur(self.frame_inputs(stem_tokens))
