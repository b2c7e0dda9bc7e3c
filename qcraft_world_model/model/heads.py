"""The frame head: future camera frames from the latent tokens (the agent head: detection.py)."""

from __future__ import annotations

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

    def __init__(self, dim: int, grid_hw: tuple[int, int], size_hw: tuple[int, int], horizons: int,
                 width: int) -> None:
        super().__init__()
        self.grid, self.size, self.horizons = tuple(grid_hw), tuple(size_hw), horizons
        self.inp = nn.Conv2d(dim, width, 1)
        self.up1 = _up_block(width + 6, width)       # grid → 2 grid, with the skips at that size
        self.up2 = _up_block(width + 6, width // 2)  # 2 grid → 4 grid
        self.out = nn.Conv2d(width // 2 + 6, 5 * horizons, 3, padding=1)  # flow (2) + residual (3) per horizon
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """tokens (B, gh*gw, dim) in raster order, newest/previous (B, 3, H, W) uint8 → (B, horizons, 3, H, W) in [0, 1]."""
        b = tokens.shape[0]
        last = newest.to(tokens.dtype) / 255.0
        skip = torch.cat([last, last - previous.to(tokens.dtype) / 255.0], dim=1)
        (gh, gw), (h, w) = self.grid, self.size
        x = self.inp(tokens.transpose(1, 2).reshape(b, -1, gh, gw))
        x = self.up1(torch.cat([x, F.interpolate(skip, size=(gh, gw), mode="area")], dim=1))
        x = self.up2(torch.cat([x, F.interpolate(skip, size=(2 * gh, 2 * gw), mode="area")], dim=1))
        x = self.out(torch.cat([x, F.interpolate(skip, size=(4 * gh, 4 * gw), mode="area")], dim=1))
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        # The warp runs in fp32 whatever the decoder's dtype: in bf16 a sampling coordinate near
        # the image edge moves in steps of 1/128 of the image, about a pixel at 128 px.
        x = x.float().view(b, self.horizons, 5, h, w)
        flow, residual = x[:, :, :2], x[:, :, 2:]
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                                indexing="ij")
        base = torch.stack([xs, ys], dim=-1)  # (H, W, 2), grid_sample's (x, y) order
        grid = base + 0.1 * flow.permute(0, 1, 3, 4, 2)  # flow in units of a tenth of the image
        source = newest.float() / 255.0
        warped = F.grid_sample(source.repeat_interleave(self.horizons, dim=0),
                               grid.reshape(b * self.horizons, h, w, 2),
                               mode="bilinear", padding_mode="border", align_corners=True)
        frames = warped.view(b, self.horizons, 3, h, w) + 0.2 * residual
        return frames.clamp(0.0, 1.0)
