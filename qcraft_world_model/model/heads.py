"""Heads: future camera frames from the latent tokens, agents from the anchor tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _up_block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.GELU(),
                         nn.Conv2d(channels_out, channels_out, 3, padding=1), nn.GELU())


class FrameDecoder(nn.Module):
    """One camera's latent tokens + its two newest frames → future frames.

    Each future frame is the newest frame warped by a predicted flow field plus a
    predicted residual: most of what changes in a driving view over a second is
    motion, which a warp represents exactly, and a zero flow is copy-last-frame,
    so training starts from that baseline. The two newest frames (and their
    difference) enter at every scale as skip inputs: the latent carries what moves
    and why, the skips carry where the edges are now.
    """

    def __init__(self, dim: int, grid: int, image_size: int, horizons: int, width: int) -> None:
        super().__init__()
        self.grid, self.image_size, self.horizons = grid, image_size, horizons
        self.inp = nn.Conv2d(dim, width, 1)
        self.up1 = _up_block(width + 6, width)       # grid → 2 grid, with the skips at that size
        self.up2 = _up_block(width + 6, width // 2)  # 2 grid → 4 grid
        self.out = nn.Conv2d(width // 2 + 6, 5 * horizons, 3, padding=1)  # flow (2) + residual (3) per horizon
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """tokens (B, grid*grid, dim), newest/previous (B, 3, H, W) uint8 → (B, horizons, 3, H, W) in [0, 1]."""
        b = tokens.shape[0]
        last = newest.to(tokens.dtype) / 255.0
        skip = torch.cat([last, last - previous.to(tokens.dtype) / 255.0], dim=1)
        x = self.inp(tokens.transpose(1, 2).reshape(b, -1, self.grid, self.grid))
        x = self.up1(torch.cat([x, F.interpolate(skip, size=self.grid, mode="area")], dim=1))
        x = self.up2(torch.cat([x, F.interpolate(skip, size=2 * self.grid, mode="area")], dim=1))
        x = self.out(torch.cat([x, F.interpolate(skip, size=4 * self.grid, mode="area")], dim=1))
        x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        # The warp runs in fp32 whatever the decoder's dtype: in bf16 a sampling coordinate near
        # the image edge moves in steps of 1/128 of the image, about a pixel at 128 px.
        x = x.float().view(b, self.horizons, 5, self.image_size, self.image_size)
        flow, residual = x[:, :, :2], x[:, :, 2:]
        axis = torch.linspace(-1, 1, self.image_size, device=x.device)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        base = torch.stack([xs, ys], dim=-1)  # (H, W, 2), grid_sample's (x, y) order
        grid = base + 0.1 * flow.permute(0, 1, 3, 4, 2)  # flow in units of a tenth of the image
        source = newest.float() / 255.0
        warped = F.grid_sample(source.repeat_interleave(self.horizons, dim=0),
                               grid.reshape(b * self.horizons, self.image_size, self.image_size, 2),
                               mode="bilinear", padding_mode="border", align_corners=True)
        frames = warped.view(b, self.horizons, 3, self.image_size, self.image_size) + 0.2 * residual
        return frames.clamp(0.0, 1.0)


@dataclass
class AgentPrediction:
    """Per anchor slot, in the ego frame at t0 (metres, radians)."""

    existence_logit: torch.Tensor  # (B, A)
    class_logits: torch.Tensor  # (B, A, classes)
    position: torch.Tensor  # (B, A, 2) box centre x, y
    heading: torch.Tensor  # (B, A, 2) cos, sin (unnormalised)
    log_size: torch.Tensor  # (B, A, 3) log length, width, height
    paths: torch.Tensor  # (B, A, modes, steps, 2) future box centres
    mode_logits: torch.Tensor  # (B, A, modes)


def reference_points(anchors: int, hfov_deg: float = 90.0, near: float = 6.0, far: float = 45.0) -> torch.Tensor:
    """(A, 2) ego-frame points spread over the front camera's view: each anchor's home.

    Predicting an offset from a fixed home (as anchor-point DETR variants do)
    gives every anchor a region of the scene to own, which makes the Hungarian
    matching stable early in training instead of every anchor chasing every agent.
    """
    rows = max(1, round(anchors ** 0.5))
    cols = -(-anchors // rows)
    distances = torch.linspace(near, far, rows)
    half = torch.tan(torch.deg2rad(torch.tensor(hfov_deg / 2))) * 0.8
    points = [(d, d * s) for d in distances for s in torch.linspace(-half, half, cols)]
    return torch.tensor(points[:anchors], dtype=torch.float32)


class AgentHead(nn.Module):
    """Anchor tokens (B, A, dim) → one agent hypothesis each, with K future paths."""

    # Network outputs are scaled to metres: positions span tens of metres.
    POSITION_SCALE = 20.0
    PATH_SCALE = 10.0

    def __init__(self, dim: int, classes: int, modes: int, steps: int, anchors: int, homes: bool = True) -> None:
        super().__init__()
        self.classes, self.modes, self.steps = classes, modes, steps
        # Derived from the config, so not saved with the weights.
        home = reference_points(anchors) if homes else torch.zeros(anchors, 2)
        self.register_buffer("home", home, persistent=False)
        self.trunk = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU())
        self.existence = nn.Linear(dim, 1)
        self.cls = nn.Linear(dim, classes)
        self.box = nn.Linear(dim, 2 + 2 + 3)
        self.paths = nn.Linear(dim, modes * steps * 2)
        self.mode = nn.Linear(dim, modes)

    def forward(self, anchors: torch.Tensor) -> AgentPrediction:
        h = self.trunk(anchors)
        b, a, _ = h.shape
        box = self.box(h)
        position = self.home + box[..., :2] * self.POSITION_SCALE
        offsets = self.paths(h).view(b, a, self.modes, self.steps, 2) * self.PATH_SCALE
        return AgentPrediction(
            existence_logit=self.existence(h).squeeze(-1),
            class_logits=self.cls(h),
            position=position,
            heading=box[..., 2:4],
            log_size=box[..., 4:7],
            paths=position.unsqueeze(2).unsqueeze(3) + offsets,
            mode_logits=self.mode(h),
        )
