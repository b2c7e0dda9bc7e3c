"""Agents from the dense head's maps: peaks → ego-frame agents with paths and uncertainty.

The one decoder that evaluation, the node and the exporters share. Peaks of each
class group's heat map (a 3×3 local maximum above a threshold) are agents; each is
placed with its camera's geometry (``geometry.CameraGeometry.lift``), and its
heading, velocity and paths, predicted relative to the bearing it is seen at, are
turned back into the ego frame. Agents seen by two cameras are merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from qcraft_world_model.model.detection import GROUP_OF_LABEL, AgentPrediction
from qcraft_world_model.model.geometry import CameraGeometry, rotate

#: Standard deviation of the keypoint's image position used for the position covariance, pixels of
#: the model's image. Half a cell of the 4-px grid: the head's sub-cell offset is trained with L1,
#: the covariance says what a planner should expect from that resolution (docs/model.md, bound table).
KEYPOINT_SIGMA_PX = 2.0
#: Agents of one group closer than this in the ego frame, from two cameras, are one agent.
MERGE_RADIUS_M = 1.0


@dataclass
class DecodedAgents:
    """One window's agents in the ego frame at t0 (metres, radians, m/s), most likely first."""

    score: np.ndarray  # (D,) heat-map peak: the existence probability
    label: np.ndarray  # (D,) Autoware label
    label_prob: np.ndarray  # (D,)
    position: np.ndarray  # (D, 2) footprint centre x, y
    heading: np.ndarray  # (D,)
    size: np.ndarray  # (D, 3) length, width, height
    velocity: np.ndarray  # (D, 2)
    paths: np.ndarray  # (D, K, P, 2) future footprint centres, most likely mode first
    mode_prob: np.ndarray  # (D, K)
    position_cov: np.ndarray  # (D, 2, 2) from the keypoint's image uncertainty through the camera geometry
    velocity_cov: np.ndarray  # (D, 2, 2) from the spread of the predicted modes
    camera: np.ndarray  # (D,) index of the camera that saw it
    pixel: np.ndarray  # (D, 2) where, in that camera's image

    def __len__(self) -> int:
        return len(self.score)

    def take(self, keep: np.ndarray) -> DecodedAgents:
        return DecodedAgents(**{k: v[keep] for k, v in vars(self).items()})

    @classmethod
    def empty(cls, modes: int, steps: int) -> DecodedAgents:
        return cls(score=np.zeros(0), label=np.zeros(0, np.int64), label_prob=np.zeros(0), position=np.zeros((0, 2)),
                   heading=np.zeros(0), size=np.zeros((0, 3)), velocity=np.zeros((0, 2)),
                   paths=np.zeros((0, modes, steps, 2)), mode_prob=np.zeros((0, modes)),
                   position_cov=np.zeros((0, 2, 2)), velocity_cov=np.zeros((0, 2, 2)), camera=np.zeros(0, np.int64),
                   pixel=np.zeros((0, 2)))


def _peaks(heatmap: torch.Tensor, threshold: float, limit: int) -> tuple[torch.Tensor, ...]:
    """(groups, h, w) logits → score, group, row, col of local maxima above ``threshold``, best first."""
    prob = heatmap.float().sigmoid()
    peak = (prob == F.max_pool2d(prob[None], 3, stride=1, padding=1)[0]) & (prob > threshold)
    group, row, col = peak.nonzero(as_tuple=True)
    score = prob[group, row, col]
    order = score.argsort(descending=True)[:limit]
    return score[order], group[order], row[order], col[order]


def _label_in_group(class_logits: torch.Tensor, group: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The most likely Autoware label among those of the peak's group, and its probability."""
    prob = class_logits.float().softmax(-1)  # (D, classes)
    allowed = torch.tensor(GROUP_OF_LABEL)[None, :].eq(group[:, None])
    masked = torch.where(allowed, prob, torch.zeros_like(prob))
    best = masked.argmax(-1)
    return best.numpy(), prob.gather(1, best[:, None])[:, 0].numpy()


def decode_camera(pred: AgentPrediction, b: int, c: int, camera: CameraGeometry, stride: int, dt_s: float,
                  threshold: float, limit: int) -> DecodedAgents:
    """The agents of camera ``c`` of window ``b``."""
    score, group, row, col = _peaks(pred.heatmap[b, c], threshold, limit)
    modes = pred.mode_logits.shape[2]
    steps = pred.paths.shape[2] // (2 * modes)
    if len(score) == 0:
        return DecodedAgents.empty(modes, steps)

    def at(maps: torch.Tensor) -> torch.Tensor:
        return maps[b, c][:, row, col].T.float()  # (D, channels)

    offset = at(pred.offset).numpy()
    pixel = np.stack([col.numpy() + offset[:, 0], row.numpy() + offset[:, 1]], axis=1) * stride
    depth = at(pred.log_depth)[:, 0].exp().numpy()
    ground = camera.lift(pixel, depth)
    bearing = camera.azimuth(ground)
    head = at(pred.heading).numpy()
    heading = np.arctan2(head[:, 1], head[:, 0]) + bearing
    mode_prob = at(pred.mode_logits).softmax(-1).numpy()
    order = np.argsort(-mode_prob, axis=1)
    displacement = at(pred.paths).numpy().reshape(-1, modes, steps, 2)
    displacement = np.take_along_axis(displacement, order[:, :, None, None], axis=1)
    mode_prob = np.take_along_axis(mode_prob, order, axis=1)
    paths = ground[:, None, None, :2] + rotate(displacement, bearing[:, None, None])
    velocity = rotate(at(pred.velocity).numpy(), bearing)
    label, label_prob = _label_in_group(at(pred.class_logits), group)
    return DecodedAgents(
        score=score.numpy(), label=label, label_prob=label_prob, position=ground[:, :2],
        heading=np.arctan2(np.sin(heading), np.cos(heading)), size=at(pred.log_size).exp().numpy(), velocity=velocity,
        paths=paths, mode_prob=mode_prob, position_cov=_position_cov(camera, pixel, depth),
        velocity_cov=_velocity_cov(paths, mode_prob, ground[:, :2], dt_s), camera=np.full(len(score), c), pixel=pixel)


def _position_cov(camera: CameraGeometry, pixel: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(D, 2, 2): a ``KEYPOINT_SIGMA_PX`` image error carried through the lift (finite differences)."""
    h = KEYPOINT_SIGMA_PX
    du = camera.lift(pixel + [h, 0], depth)[:, :2] - camera.lift(pixel - [h, 0], depth)[:, :2]
    dv = camera.lift(pixel + [0, h], depth)[:, :2] - camera.lift(pixel - [0, h], depth)[:, :2]
    jacobian_cols = np.stack([du, dv], axis=2) / 2  # (D, 2, 2): metres per sigma along u and v
    return jacobian_cols @ jacobian_cols.transpose(0, 2, 1)


def _velocity_cov(paths: np.ndarray, mode_prob: np.ndarray, position: np.ndarray, first_step_s: float
                  ) -> np.ndarray:
    """(D, 2, 2): the probability-weighted spread of the velocities the modes imply over their first step.

    Where the modes agree this is small; a floor of (0.1 m/s)² keeps it a proper covariance.
    """
    implied = (paths[:, :, 0] - position[:, None]) / first_step_s  # (D, K, 2)
    mean = (mode_prob[..., None] * implied).sum(1, keepdims=True)
    centred = implied - mean
    cov = np.einsum("dk,dki,dkj->dij", mode_prob, centred, centred)
    return cov + np.eye(2) * 0.01


def decode_agents(pred: AgentPrediction, cameras: list[list[CameraGeometry]], stride: int,
                  path_steps_s: tuple[float, ...], threshold: float = 0.3, limit: int = 100) -> list[DecodedAgents]:
    """Per window of the batch, its agents above ``threshold`` from every camera, merged, best first.

    ``cameras[b][c]`` is camera c of window b as the model saw it (intrinsics at the model's image size).
    """
    decoded = []
    for b, rig in enumerate(cameras):
        parts = [decode_camera(pred, b, c, camera, stride, path_steps_s[0], threshold, limit)
                 for c, camera in enumerate(rig)]
        merged = DecodedAgents(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in vars(parts[0])})
        decoded.append(_merge_cameras(merged).take(slice(0, limit)))
    return decoded


def _merge_cameras(agents: DecodedAgents) -> DecodedAgents:
    """Best first; an agent of the same group within MERGE_RADIUS_M of a better one (another camera's view
    of it) is dropped."""
    order = np.argsort(-agents.score, kind="stable")
    agents = agents.take(order)
    groups = np.array([GROUP_OF_LABEL[int(label)] for label in agents.label], np.int64)
    keep: list[int] = []
    for i in range(len(agents)):
        if not any(groups[j] == groups[i] and agents.camera[j] != agents.camera[i]
                   and np.linalg.norm(agents.position[j] - agents.position[i]) < MERGE_RADIUS_M for j in keep):
            keep.append(i)
    return agents.take(np.array(keep, np.int64))
