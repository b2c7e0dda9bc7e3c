"""Ground truth for the dense agent head: heat maps and per-agent regression targets on its grid.

Every agent to find puts a Gaussian peak on its class group's heat map at the
pixel of its ground-contact point (the centre of its footprint, z = 0), seen by
the clip's own camera; the cell under that pixel carries the agent's sub-cell
offset, depth, heading, size, velocity and future, in the camera's terms
(``model/detection.py``): motion relative to the ego carrying on at its t0
velocity, the ego's velocity being a target of its own. When two agents fall in
one cell the nearer wins.

Agents mostly hidden behind nearer agents are not asked for (a heat-map peak on
a car nobody can see teaches the model to invent cars): their visible share is
estimated from the projected boxes of nearer agents on a coarse raster. That is
a training choice; evaluation decides visibility from rendered pixels.
"""

from __future__ import annotations

import numpy as np
import torch

from qcraft_world_model.data.clip_tensors import Batch
from qcraft_world_model.model.config import WorldModelConfig
from qcraft_world_model.model.detection import CLASS_GROUPS, GROUP_OF_LABEL
from qcraft_world_model.model.geometry import CameraGeometry, box_corners, rotate
from qcraft_world_model.model.losses import AgentTargets

#: Agents whose projected box is less visible than this (behind nearer agents' boxes) are not targets.
MIN_TARGET_VISIBILITY = 0.25
#: Agents the model is asked to find: this close at t0 (and their footprint seen).
TARGET_RADIUS_M = 50.0


def box_visibility(camera: CameraGeometry, corners: np.ndarray, cells: int = 32) -> np.ndarray:
    """(G,) share of each projected box (its 2D bounding rectangle) not covered by nearer agents' boxes.

    A coarse painter's algorithm on a ``cells``² raster: cheap, ignores buildings and
    the boxes' real silhouettes. Boxes with a corner behind the camera count as fully
    visible (they are beside the ego, nothing stands between).
    """
    count = len(corners)
    visible = np.ones(count)
    if count == 0:
        return visible
    pixels, depth = camera.project(corners.reshape(-1, 3))
    pixels, depth = pixels.reshape(count, 8, 2), depth.reshape(count, 8)
    scale = np.array([cells / camera.width, cells / camera.height])
    owner = np.full((cells, cells), -1)
    order = np.argsort(np.where(depth > 0, depth, np.inf).min(axis=1))  # nearest first; behind the camera last
    for g in order:
        if not (depth[g] > 0.1).all():
            continue
        lo = np.clip(np.floor(pixels[g].min(0) * scale), 0, cells).astype(int)
        hi = np.clip(np.ceil(pixels[g].max(0) * scale), 0, cells).astype(int)
        if (hi <= lo).any():
            visible[g] = 0.0
            continue
        patch = owner[lo[1]:hi[1], lo[0]:hi[0]]
        visible[g] = float((patch == -1).mean())
        patch[patch == -1] = g
    return visible


def dense_targets(position: np.ndarray, heading: np.ndarray, speed_xy: np.ndarray, size: np.ndarray,
                  label: np.ndarray, mask: np.ndarray, future: np.ndarray, future_valid: np.ndarray,
                  cameras: list[list[CameraGeometry]], stride: int, ego_velocity: np.ndarray,
                  path_times_s: np.ndarray) -> AgentTargets:
    """Targets for B clips × C cameras from t0 ground truth in the ego frame.

    position (B, G, 2), heading (B, G), speed_xy (B, G, 2) velocity, size (B, G, 3), label (B, G),
    mask (B, G) agents to find, future (B, G, P, 2) positions at the path steps, future_valid (B, G, P),
    ego_velocity (B, 2) the ego's velocity at t0, path_times_s (P,) the path steps' times after t0.
    """
    batch, steps = position.shape[0], future.shape[2]
    cams = len(cameras[0])
    height, width = cameras[0][0].height // stride, cameras[0][0].width // stride
    heat = np.zeros((batch, cams, len(CLASS_GROUPS), height, width), np.float32)
    rows: list[tuple] = []
    ys, xs = np.mgrid[0:height, 0:width]
    for b in range(batch):
        real = np.flatnonzero(mask[b])
        if len(real) == 0:
            continue
        ground = np.concatenate([position[b, real], np.zeros((len(real), 1))], axis=1)
        corners = box_corners(position[b, real], heading[b, real], size[b, real])
        for c, camera in enumerate(cameras[b]):
            pixels, depth = camera.project(ground)
            inside = (depth > 0.5) & (pixels[:, 0] >= 0) & (pixels[:, 0] < camera.width) & \
                (pixels[:, 1] >= 0) & (pixels[:, 1] < camera.height)
            inside &= box_visibility(camera, corners) >= MIN_TARGET_VISIBILITY
            taken: dict[tuple[int, int], float] = {}
            bearing = camera.azimuth(ground)
            for i in np.flatnonzero(inside)[np.argsort(depth[inside])]:  # nearest first: it keeps a shared cell
                g = real[i]
                u, v = pixels[i] / stride
                col, row = int(u), int(v)
                group = GROUP_OF_LABEL[int(label[b, g])]
                # Peak width from the agent's width on the grid (CenterNet's size-adaptive Gaussian).
                sigma = max(0.5, 0.25 * camera.fx * float(size[b, g, 1]) / depth[i] / stride)
                blob = np.exp(-((xs + 0.5 - u) ** 2 + (ys + 0.5 - v) ** 2) / (2 * sigma ** 2))
                heat[b, c, group] = np.maximum(heat[b, c, group], blob)
                if (row, col) in taken:
                    continue
                taken[(row, col)] = depth[i]
                heat[b, c, group, row, col] = 1.0
                turn = -bearing[i]
                ego_shift = ego_velocity[b][None, :] * path_times_s[:, None]  # (P, 2) the ego at constant velocity
                displacement = rotate(future[b, g] - position[b, g] - ego_shift, turn)
                rows.append(((b, c, row, col), (u - col, v - row), np.log(depth[i]),
                             float(np.arctan2(np.sin(heading[b, g] + turn), np.cos(heading[b, g] + turn))),
                             np.log(np.maximum(size[b, g], 0.1)), rotate(speed_xy[b, g] - ego_velocity[b], turn), displacement,
                             future_valid[b, g], int(label[b, g])))
    m = len(rows)

    def column(k: int, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.array([r[k] for r in rows]).reshape(m, *shape), dtype=dtype)

    return AgentTargets(heatmap=torch.from_numpy(heat), index=column(0, (4,), torch.long),
                        offset=column(1, (2,), torch.float32), log_depth=column(2, (), torch.float32),
                        heading=column(3, (), torch.float32), log_size=column(4, (3,), torch.float32),
                        velocity=column(5, (2,), torch.float32), future=column(6, (steps, 2), torch.float32),
                        future_valid=column(7, (steps,), torch.bool), label=column(8, (), torch.long),
                        ego_velocity=torch.as_tensor(np.asarray(ego_velocity, np.float32).reshape(batch, 2)))


def batch_targets(batch: Batch, config: WorldModelConfig, t0: int) -> AgentTargets:
    """The agent head's targets for a batch (``t0``: the row of the newest frame). Every agent within
    TARGET_RADIUS_M is offered; ``dense_targets`` keeps those whose ground-contact point the camera sees."""
    agents = batch.agents
    t0_agents = agents[:, t0].numpy().astype(np.float64)
    position = t0_agents[..., :2]
    within = batch.valid[:, t0].numpy() & (np.linalg.norm(position, axis=-1) <= TARGET_RADIUS_M)
    steps = [t0 + s for s in config.path_steps]
    return dense_targets(position, t0_agents[..., 2], t0_agents[..., 3:5], batch.size.numpy(), batch.label.numpy(),
                         within, agents[:, steps, :, :2].permute(0, 2, 1, 3).numpy().astype(np.float64),
                         batch.valid[:, steps].permute(0, 2, 1).numpy(), batch.cameras, config.detection_stride,
                         batch.ego_velocity.numpy().astype(np.float64), np.asarray(config.path_steps) / config.rate_hz)
