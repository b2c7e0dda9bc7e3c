"""The agent head: dense, anchor-free detection and forecasting on an image-aligned grid.

CenterNet-style: every cell of a map at 1/``stride`` of the image predicts how
likely it holds the *ground-contact point* of an agent (the centre of its box's
footprint, projected into the image), per class group, and, where one is, what
it is: sub-cell offset, optical depth, heading, size, velocity and K future paths
with their probabilities. Peaks of the heat map are the agents, as many as the
scene holds (decoding: ``agent_decode.py``).

Everything is in the camera's own terms — image position, depth along the ray,
and heading/velocity/paths rotated into the bearing the agent is seen at — so
that the ego-frame placement is done by the camera geometry, not learned into
the weights for one mount (``geometry.py``).

Motion is predicted as the camera sees it: an agent's velocity and future
displacement *relative to the ego carrying on at its current velocity* (a parked
car streams towards a moving camera; a car keeping pace stands still in the image).
That is what 16 frames show whatever the ego does; the ego's own velocity is
added back when decoding — from odometry where the vehicle has it, else from the
head's own estimate of the ego's velocity (``ego_velocity``, read from how the
whole image moves). Predicting absolute motion instead asks the network to
separate its own motion from the agents' inside the weights, and its velocity
error grew with the ego's speed (docs/model.md).

Two inputs per camera: the transformer's latent tokens (what moved over 16 frames
and the scene's context, at the token grid) and the two newest frames (where the
edges are now, at full resolution), fused at the output grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Class groups of the heat map (nuScenes-style detection groups) and the Autoware labels in each.
CLASS_GROUPS = ("car", "pedestrian", "bicycle")
GROUP_OF_LABEL = (0, 0, 0, 0, 0, 2, 2, 1)  # UNKNOWN CAR TRUCK BUS TRAILER MOTORCYCLE BICYCLE PEDESTRIAN


@dataclass
class AgentPrediction:
    """Dense agent maps per camera, (B, C, channels, h, w) each, in the camera's terms, and the ego's velocity."""

    heatmap: torch.Tensor  # (B, C, groups, h, w) logits: a ground-contact point of that group here
    offset: torch.Tensor  # (B, C, 2, h, w) sub-cell position of the point, in cells (0..1 from the cell's corner)
    log_depth: torch.Tensor  # (B, C, 1, h, w) log optical depth of the point, metres
    heading: torch.Tensor  # (B, C, 2, h, w) cos, sin of heading minus the bearing (unnormalised)
    log_size: torch.Tensor  # (B, C, 3, h, w) log length, width, height
    velocity: torch.Tensor  # (B, C, 2, h, w) m/s relative to the ego's, rotated into the bearing frame
    #: (B, C, modes * steps * 2, h, w) displacement from now minus the ego's at its current velocity, m,
    #: bearing frame
    paths: torch.Tensor
    mode_logits: torch.Tensor  # (B, C, modes, h, w)
    class_logits: torch.Tensor  # (B, C, classes, h, w) Autoware labels
    #: (B, 2) the ego's own velocity (x forward, y left, m/s) as the image motion shows it: the fallback
    #: where no odometry is given to the decoder
    ego_velocity: torch.Tensor


def _conv(channels_in: int, channels_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1), nn.GELU())


class DenseAgentHead(nn.Module):
    """Tokens (B*C, gh*gw, dim) + newest/previous frames (B*C, 3, H, W) uint8 → AgentPrediction maps."""

    #: Displacements and velocities leave the network in these units (metres, m/s): targets span tens.
    PATH_SCALE = 10.0
    VELOCITY_SCALE = 10.0

    def __init__(self, dim: int, grid_hw: tuple[int, int], size_hw: tuple[int, int], stride: int, width: int,
                 classes: int, modes: int, steps: int, ego_relative: bool = True) -> None:
        super().__init__()
        for side, cells in zip(size_hw, grid_hw):
            if side % stride or (side // stride) % cells:
                raise ValueError(f"image side {side} / stride {stride} must be a multiple of the grid side {cells}")
        self.grid, self.modes, self.steps, self.classes = tuple(grid_hw), modes, steps, classes
        self.out_size = (size_hw[0] // stride, size_hw[1] // stride)
        # Image branch: the newest frame and its change since the previous one, down to the output grid.
        layers, channels, size = [], 6, size_hw[1]
        while size > self.out_size[1]:
            layers.append(_conv(channels, width // 2, stride=2))
            channels, size = width // 2, size // 2
        self.image = nn.Sequential(*layers, _conv(channels, width // 2))
        self.tokens = nn.Conv2d(dim, width // 2, 1)
        self.fuse = nn.Sequential(_conv(width, width), _conv(width, width))
        self.splits = {"heatmap": len(CLASS_GROUPS), "offset": 2, "log_depth": 1, "heading": 2, "log_size": 3,
                       "velocity": 2, "paths": modes * steps * 2, "mode_logits": modes, "class_logits": classes}
        self.out = nn.Conv2d(width, sum(self.splits.values()), 1)
        # Ego velocity from the fused maps. A coarse 4x4 layout is kept, not a global mean: forward
        # motion makes the image expand (the left half flows left, the right half right), and a mean
        # over the image cancels exactly that.
        # (Models predicting absolute motion have no such head; their estimate reads zero.)
        self.ego = nn.Sequential(nn.Conv2d(width, 16, 1), nn.GELU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                 nn.Linear(16 * 16, 64), nn.GELU(), nn.Linear(64, 2)) if ego_relative else None
        with torch.no_grad():  # CenterNet's prior: start with ~1 % of cells lit, not half
            self.out.bias.zero_()
            self.out.bias[: len(CLASS_GROUPS)] = -math.log((1 - 0.01) / 0.01)
            self.out.bias[3 + 2] = math.log(15.0)  # log depth starts at 15 m

    def forward(self, tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor, cameras: int
                ) -> AgentPrediction:
        n = tokens.shape[0]
        dtype = self.out.weight.dtype
        last = newest.to(dtype) / 255.0
        image = self.image(torch.cat([last - 0.45, last - previous.to(dtype) / 255.0], dim=1))
        grid = self.tokens(tokens.to(dtype).transpose(1, 2).reshape(n, -1, *self.grid))
        grid = F.interpolate(grid, size=self.out_size, mode="bilinear", align_corners=False)
        fused = self.fuse(torch.cat([image, grid], dim=1))
        x = self.out(fused)  # (B*C, channels, h, w)
        # Each camera's estimate of the ego's velocity, averaged over the rig. Training rigs look
        # forward; a rear camera's flow would read as reversing, so such a rig needs odometry.
        ego = (self.ego(fused) * self.VELOCITY_SCALE if self.ego is not None else fused.new_zeros(n, 2))
        ego = ego.reshape(n // cameras, cameras, 2).mean(1)
        parts = dict(zip(self.splits, x.split(list(self.splits.values()), dim=1)))
        parts["offset"] = parts["offset"].sigmoid()
        parts["velocity"] = parts["velocity"] * self.VELOCITY_SCALE
        parts["paths"] = parts["paths"] * self.PATH_SCALE
        return AgentPrediction(**{k: v.reshape(n // cameras, cameras, *v.shape[1:]) for k, v in parts.items()},
                               ego_velocity=ego)
