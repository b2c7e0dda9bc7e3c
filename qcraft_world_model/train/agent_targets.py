"""Ground truth for the dense agent head: heat maps and per-agent regression targets on its grid.

Every agent to find puts a Gaussian peak on its class group's heat map at the
pixel of its ground-contact point (the centre of its footprint, z = 0), seen by
the clip's own camera; the cell under that pixel carries the agent's sub-cell
offset, depth, heading, size, velocity and future, in the camera's terms
(``model/detection.py``): motion relative to the ego carrying on at its t0
velocity, the ego's velocity being a target of its own. When two agents fall in
one cell the nearer wins.

An agent cut by the image's left, right or bottom edge, whose ground-contact
point lies outside the image while a good part of its box is inside, is asked for
at the edge: its peak goes on the border nearest that point, and its depth is
that point's. The shared decoder then places it on the edge ray
at the right depth (``agent_decode.place``), a lateral error of depth × (tan of
its bearing − tan of the edge's), under 1.2 m for a car centred 4° outside a 90°
lens at 12 m. Without this such cars are never targets, yet they are in the
evaluation's scope (8 % of the held-out cars within 30 m, none of which the
session-6 models found) and beside the ego, where a planner needs them most.
(MonoFlex, Zhang et al. 2021, makes the same observation and regresses the cut
agents from the edge, with an extra offset head; this keeps the head as it is.)

Agents mostly hidden are not asked for (a heat-map peak on a car nobody can see
teaches the model to invent cars). Where the clips carry the renderer's id
buffer, the visible share is the one evaluation scores by (the share of the
agent's silhouette its own pixels show, behind agents *and* buildings). Without
it (a recorded bag) it is estimated from the projected boxes of nearer agents on
a coarse raster, which is not what evaluation counts: on 200 training clips
(session 9) the raster hid 15 of the 244 cars within 30 m that the rendered frames
show at least 40 % of (a near truck's bounding rectangle covers whatever stands
behind its cab), so the model was never asked for cars it is scored on.
"""

from __future__ import annotations

import numpy as np
import torch

from qcraft_world_model.data.clip_tensors import Batch
from qcraft_world_model.model.agent_decode import place
from qcraft_world_model.model.config import WorldModelConfig
from qcraft_world_model.model.detection import CLASS_GROUPS, GROUP_OF_LABEL
from qcraft_world_model.model.geometry import CameraGeometry, box_corners, rotate
from qcraft_world_model.model.losses import AgentTargets

#: Agents whose projected box is less visible than this (behind nearer agents' boxes) are not targets.
MIN_TARGET_VISIBILITY = 0.25
#: Agents the model is asked to find: this close at t0 (and their footprint seen).
TARGET_RADIUS_M = 50.0
#: A cut agent (ground-contact point beyond the image's left, right or bottom edge) is a target when at least
#: this share of its projected box rectangle is inside the image, or (a car close beside the ego,
#: whose rectangle dwarfs the image) the part inside covers this share of the image ...
MIN_TRUNCATED_INSIDE = 0.15
MIN_TRUNCATED_IMAGE_SHARE = 0.01
#: ... and the edge ray places it within this of its ground-contact point (LET's lateral tolerance is
#: 2 m): farther out, its peak would teach a detection in the wrong place.
MAX_EDGE_PLACEMENT_M = 1.5


def edge_keypoints(camera: CameraGeometry, ground: np.ndarray, corners: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where each agent's peak goes: (G, 2) keypoints in image pixels, (G,) optical depth of its
    ground-contact point, (G,) bool whether it has a peak at all, and (G, 3) the point the shared
    decoder places from that keypoint and depth (the agent's own ground point when it is in the image).

    ``ground`` (G, 3) are the agents' ground-contact points, ``corners`` (G, 8, 3) their boxes. A
    point inside the image is its own keypoint. A point beyond the left, right or bottom edge (a car
    close beside the ego stands below the image) moves onto the border, half a pixel in, when the
    agent's whole box is in front of the camera, at least MIN_TRUNCATED_INSIDE of its projected
    rectangle is in the image and the decoder would place it within MAX_EDGE_PLACEMENT_M of where it
    is. Above the top edge is sky: nothing stands there.
    """
    pixels, depth = camera.project(ground)
    u, v = pixels[:, 0], pixels[:, 1]
    in_front = depth > 0.5
    inside = in_front & (v >= 0) & (v < camera.height) & (u >= 0) & (u < camera.width)
    clamped = np.stack([np.clip(u, 0.5, camera.width - 0.5), np.clip(v, 0.5, camera.height - 0.5)], axis=1)
    keypoints = np.where(inside[:, None], pixels, clamped)  # an agent in the image keeps its own point
    placed = place(camera, keypoints, np.maximum(depth, 0.5))[0]
    count = len(corners)
    if count == 0:
        return keypoints, depth, inside, placed
    box_px, box_depth = camera.project(corners.reshape(-1, 3))
    box_px, box_depth = box_px.reshape(count, 8, 2), box_depth.reshape(count, 8)
    lo, hi = box_px.min(1), box_px.max(1)
    area = np.prod(np.maximum(hi - lo, 1e-6), axis=1)
    clipped = np.prod(np.maximum(np.minimum(hi, [camera.width, camera.height]) - np.maximum(lo, 0.0), 0.0), axis=1)
    cut = (in_front & (v >= 0) & ~inside & (box_depth > 0.1).all(1)
           & ((clipped >= MIN_TRUNCATED_INSIDE * area)
              | (clipped >= MIN_TRUNCATED_IMAGE_SHARE * camera.width * camera.height))
           & (np.linalg.norm(placed[:, :2] - ground[:, :2], axis=1) <= MAX_EDGE_PLACEMENT_M))
    return keypoints, depth, inside | cut, placed


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
                  path_times_s: np.ndarray, visibility: np.ndarray | None = None) -> AgentTargets:
    """Targets for B clips × C cameras from t0 ground truth in the ego frame.

    position (B, G, 2), heading (B, G), speed_xy (B, G, 2) velocity, size (B, G, 3), label (B, G),
    mask (B, G) agents to find, future (B, G, P, 2) positions at the path steps, future_valid (B, G, P),
    ego_velocity (B, 2) the ego's velocity at t0, path_times_s (P,) the path steps' times after t0,
    visibility (B, G, C) each agent's rendered visible share per camera, or None: the box raster's
    estimate (``box_visibility``) decides instead.
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
            pixels, depth, inside, placed = edge_keypoints(camera, ground, corners)
            seen = box_visibility(camera, corners) if visibility is None else visibility[b, real, c]
            inside &= seen >= MIN_TARGET_VISIBILITY
            taken: dict[tuple[int, int], float] = {}
            # Motion is relative to the bearing the decoder will see the agent at: that of the point it
            # places from the keypoint (the agent's own, except for a cut agent moved onto the edge).
            bearing = camera.azimuth(placed)
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
    TARGET_RADIUS_M is offered; ``dense_targets`` keeps those whose ground-contact point the camera sees
    and that are visible enough (rendered visibility where the batch has it)."""
    agents = batch.agents
    t0_agents = agents[:, t0].numpy().astype(np.float64)
    position = t0_agents[..., :2]
    within = batch.valid[:, t0].numpy() & (np.linalg.norm(position, axis=-1) <= TARGET_RADIUS_M)
    steps = [t0 + s for s in config.path_steps]
    return dense_targets(position, t0_agents[..., 2], t0_agents[..., 3:5], batch.size.numpy(), batch.label.numpy(),
                         within, agents[:, steps, :, :2].permute(0, 2, 1, 3).numpy().astype(np.float64),
                         batch.valid[:, steps].permute(0, 2, 1).numpy(), batch.cameras, config.detection_stride,
                         batch.ego_velocity.numpy().astype(np.float64), np.asarray(config.path_steps) / config.rate_hz,
                         None if batch.visibility is None else batch.visibility.numpy())
