"""Agents from the dense head's maps: peaks → ego-frame agents with paths and uncertainty.

The one decoder that evaluation, the node and the exporters share. Peaks of each
class group's heat map (a 3×3 local maximum above a threshold) are agents; each is
placed with its camera's geometry (``geometry.CameraGeometry.lift``), and its
heading, velocity and paths, predicted relative to the bearing it is seen at, are
turned back into the ego frame. Motion leaves the head relative to the ego carrying
on at its current velocity (``detection.py``); the ego's velocity — odometry's where
the caller has it, else the head's own estimate — is added back here. Agents seen
by two cameras are merged.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from qcraft_world_model.model.detection import CLASS_GROUPS, GROUP_OF_LABEL, AgentPrediction
from qcraft_world_model.model.geometry import CameraGeometry, rotate

#: Standard deviation of the keypoint's image position, pixels of the model's image, and of the depth
#: head's range, as a share of the range. Both were fitted on training scenes (docs/model.md, "Two
#: ranges, fused"; rechecked for the 256x128 lens), never on the evaluation split; they weigh the two
#: range estimates and give the covariance.
KEYPOINT_SIGMA_PX = 0.5
DEPTH_RELATIVE_SIGMA = 0.12
#: Two peaks of one group closer than this in the ego frame are one agent (another camera's view of it,
#: or a second local maximum on a long vehicle), on top of the better one's own footprint.
MERGE_RADIUS_M = 1.0


@dataclass(frozen=True)
class MotionPrior:
    """How far the decoder trusts the head's motion, per class group (``CLASS_GROUPS`` order).

    Each agent's ground motion — its velocity and every path's displacement from where it is now — is
    scaled by its group's ``gain``: a shrinkage of a noisy measurement towards standing still, the form
    the posterior mean under a prior centred on zero motion takes (the gain itself is fitted to the
    smallest mean FDE_1, not derived from variances). Where the head's motion is mostly
    noise (pedestrians, whose walking speed is small beside the ego-motion the head has to take out of
    the image) a gain well below 1 is the better estimate; 1 keeps the head's motion as it is. Fitted per
    model on training clips (``qcraft-wm fit-motion``, ``eval/motion_prior.py``), stored with the model
    (``motion_prior.json``, ``runtime/model_folder.py``)."""

    gain: tuple[float, ...] = (1.0,) * len(CLASS_GROUPS)

    def __post_init__(self) -> None:
        gain = tuple(self.gain)
        if len(gain) != len(CLASS_GROUPS) or not all(
                isinstance(g, numbers.Real) and not isinstance(g, bool) and math.isfinite(g) and 0.0 <= g <= 1.5
                for g in gain):
            raise ValueError(f"a motion prior holds {len(CLASS_GROUPS)} gains in 0..1.5 "
                             f"({', '.join(CLASS_GROUPS)}), got {list(gain)!r}")
        object.__setattr__(self, "gain", tuple(float(g) for g in gain))  # NumPy scalars compare and print as floats

    def is_identity(self) -> bool:
        """Whether it leaves the head's motion as it is."""
        return all(g == 1.0 for g in self.gain)


#: The score every group is reported from where a model folder stores no operating point of its own.
DEFAULT_EXISTENCE_THRESHOLD = 0.5
#: Per class group, the range (m from the ego) issue 10's targets are stated within: cars 30 m, pedestrians
#: 20 m, bicycles as cars. An operating point has one threshold within it and one beyond.
NEAR_RADIUS_M = (30.0, 20.0, 30.0)


def _thresholds(values: object, what: str) -> tuple[float, ...]:
    """``values`` as one score in 0..1 per class group; ValueError naming ``what`` otherwise."""
    try:
        values = tuple(values)  # type: ignore[arg-type]
    except TypeError:
        values = ()
    if len(values) != len(CLASS_GROUPS) or not all(
            isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(t) and 0.0 <= t <= 1.0
            for t in values):
        raise ValueError(f"an operating point holds {len(CLASS_GROUPS)} score thresholds in 0..1 "
                         f"({', '.join(CLASS_GROUPS)}) {what}, got {list(values)!r}")
    return tuple(float(t) for t in values)


@dataclass(frozen=True)
class OperatingPoint:
    """The score an agent needs to be reported, per class group (``CLASS_GROUPS`` order): ``threshold``
    within the group's ``radius_m`` of the ego, ``beyond`` farther out.

    A detector's scores move with its training data (session 12: a run on harder data scored the same
    cars lower), so one fixed threshold for every model and class reports a different share of what it
    finds. A model folder can store its own (``operating_point.json``), chosen on validation clips the
    model never trained on (``qcraft-wm fit-operating-point``, ``eval/operating_point.py``); without one
    every group is reported from DEFAULT_EXISTENCE_THRESHOLD. The two ranges have their own threshold
    because precision falls with range (a keypoint error of half a pixel is metres at 40 m): a score
    that is precise enough near the ego floods the far range with false agents (session 13: pedestrians
    reported from 0.25 were 0.76 precise within 20 m and 0.05 precise at 30-50 m)."""

    threshold: tuple[float, ...] = (DEFAULT_EXISTENCE_THRESHOLD,) * len(CLASS_GROUPS)
    beyond: tuple[float, ...] | None = None  # None: the same as ``threshold``
    radius_m: tuple[float, ...] = NEAR_RADIUS_M

    def __post_init__(self) -> None:
        threshold = _thresholds(self.threshold, "within their radius")
        beyond = threshold if self.beyond is None else _thresholds(self.beyond, "beyond it")
        radius = tuple(self.radius_m)
        if len(radius) != len(CLASS_GROUPS) or not all(
                isinstance(r, numbers.Real) and not isinstance(r, bool) and math.isfinite(r) and r > 0 for r in radius):
            raise ValueError(f"an operating point holds {len(CLASS_GROUPS)} radii > 0 m, got {list(radius)!r}")
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "beyond", beyond)
        object.__setattr__(self, "radius_m", tuple(float(r) for r in radius))

    @classmethod
    def uniform(cls, threshold: float) -> OperatingPoint:
        """The same threshold for every group, near and far."""
        return cls((threshold,) * len(CLASS_GROUPS))

    def reported(self, score: np.ndarray, label: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Which of the agents (scores, labels, ego-frame positions (D, 2)) reach their threshold."""
        group = np.asarray(GROUP_OF_LABEL, np.int64)[np.asarray(label, np.int64).reshape(-1)]
        distance = np.linalg.norm(np.asarray(position, float).reshape(-1, 2), axis=1)
        near = distance < np.asarray(self.radius_m)[group]
        needed = np.where(near, np.asarray(self.threshold)[group], np.asarray(self.beyond)[group])
        return np.asarray(score).reshape(-1) >= needed

    def lowest(self) -> float:
        """The lowest threshold: what a decoder must keep to report every group's agents."""
        return min(self.threshold + self.beyond)

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Per group: the radius and the thresholds within and beyond it (operating_point.json, evaluate's JSON)."""
        return {name: {"within_m": r, "threshold": t, "beyond": b}
                for name, t, b, r in zip(CLASS_GROUPS, self.threshold, self.beyond, self.radius_m)}

    @classmethod
    def from_dict(cls, values: dict[str, dict[str, float]]) -> OperatingPoint:
        """The inverse of ``as_dict``; ValueError (or KeyError, TypeError) for anything else."""
        rows = [values[name] for name in CLASS_GROUPS]
        return cls(tuple(row["threshold"] for row in rows), tuple(row["beyond"] for row in rows),
                   tuple(row["within_m"] for row in rows))

    def describe(self) -> str:
        """In words, e.g. "car 0.4 within 30 m, 0.5 beyond"; one number where a group has one."""
        return ", ".join(f"{name} {t:g}" + (f" within {r:g} m, {b:g} beyond" if b != t else "")
                         for name, t, b, r in zip(CLASS_GROUPS, self.threshold, self.beyond, self.radius_m))


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
    prob = heatmap.detach().float().sigmoid()
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


def decode_camera(pred: AgentPrediction, b: int, c: int, camera: CameraGeometry, stride: int,
                  path_steps_s: np.ndarray, ego_velocity: np.ndarray, threshold: float, limit: int,
                  prior: MotionPrior = MotionPrior()) -> DecodedAgents:
    """The agents of camera ``c`` of window ``b``; ``ego_velocity`` (2,) the ego's, m/s, ego frame."""
    score, group, row, col = _peaks(pred.heatmap[b, c], threshold, limit)
    modes = pred.mode_logits.shape[2]
    steps = pred.paths.shape[2] // (2 * modes)
    if len(score) == 0:
        return DecodedAgents.empty(modes, steps)

    def at(maps: torch.Tensor) -> torch.Tensor:
        return maps[b, c][:, row, col].T.detach().float()  # (D, channels)

    offset = at(pred.offset).numpy()
    pixel = np.stack([col.numpy() + offset[:, 0], row.numpy() + offset[:, 1]], axis=1) * stride
    depth = at(pred.log_depth)[:, 0].exp().numpy()
    ground, along_sigma = place(camera, pixel, depth)
    bearing = camera.azimuth(ground)
    head = at(pred.heading).numpy()
    heading = np.arctan2(head[:, 1], head[:, 0]) + bearing
    mode_prob = at(pred.mode_logits).softmax(-1).numpy()
    order = np.argsort(-mode_prob, axis=1)
    displacement = at(pred.paths).numpy().reshape(-1, modes, steps, 2)
    displacement = np.take_along_axis(displacement, order[:, :, None, None], axis=1)
    mode_prob = np.take_along_axis(mode_prob, order, axis=1)
    ego_shift = ego_velocity[None, :] * path_steps_s[:, None]  # (P, 2): where the ego's own motion takes it
    motion = rotate(displacement, bearing[:, None, None]) + ego_shift  # (D, K, P, 2) ground displacement
    velocity = rotate(at(pred.velocity).numpy(), bearing) + ego_velocity
    gain = np.asarray(prior.gain, np.float64)[group.numpy()]  # (D,)
    # The spread of the modes is the head's own; shrinking the motion by k makes the posterior's
    # variance k times the measurement's (Gaussian prior and measurement), not k^2 times.
    velocity_cov = _velocity_cov(ground[:, None, None, :2] + motion, mode_prob, ground[:, :2],
                                 float(path_steps_s[0]), gain)
    label, label_prob = _label_in_group(at(pred.class_logits), group)
    return DecodedAgents(
        score=score.numpy(), label=label, label_prob=label_prob, position=ground[:, :2],
        heading=np.arctan2(np.sin(heading), np.cos(heading)), size=at(pred.log_size).exp().numpy(),
        velocity=gain[:, None] * velocity, paths=ground[:, None, None, :2] + gain[:, None, None, None] * motion,
        mode_prob=mode_prob, position_cov=_position_cov(camera, ground, along_sigma), velocity_cov=velocity_cov,
        camera=np.full(len(score), c), pixel=pixel)


def place(camera: CameraGeometry, pixel: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(D, 3) ego points of ground-contact pixels and (D,) the standard deviation of their range (m).

    Two estimates of how far along the ray: where it meets the ground (exact geometry, but a
    keypoint error of KEYPOINT_SIGMA_PX costs metres once the ray grazes the ground) and the
    depth head (appearance: a share DEPTH_RELATIVE_SIGMA of the range, whatever the range).
    They are combined by inverse variance, so near agents follow the ground and far ones the
    depth head; a ray that never meets the ground keeps the depth head alone.
    """
    rays = camera.rays(pixel)  # unit optical depth
    ground = camera.lift(pixel, np.full(len(pixel), np.nan))
    on_ground = np.isfinite(ground).all(1)
    z_ground = np.where(on_ground, (ground - camera.translation) @ camera.rotation[:, 2], np.nan)
    # How far the ground point moves for a keypoint error: finite difference along the image's v axis.
    lower = camera.lift(pixel + [0.0, KEYPOINT_SIGMA_PX], np.full(len(pixel), np.nan))
    upper = camera.lift(pixel - [0.0, KEYPOINT_SIGMA_PX], np.full(len(pixel), np.nan))
    spread = np.abs(((upper - lower) @ camera.rotation[:, 2])) / 2
    sigma_ground = np.where(np.isfinite(spread), np.maximum(spread, 1e-3), np.inf)
    sigma_depth = np.maximum(DEPTH_RELATIVE_SIGMA * depth, 1e-3)
    w_ground = np.where(on_ground, 1 / sigma_ground ** 2, 0.0)
    w_depth = 1 / sigma_depth ** 2
    z = (np.nan_to_num(z_ground) * w_ground + depth * w_depth) / (w_ground + w_depth)
    points = camera.translation + z[:, None] * rays
    points[:, 2] = 0.0  # agents stand on the ground: report the footprint
    return points, np.sqrt(1 / (w_ground + w_depth)) * np.linalg.norm(rays[:, :2], axis=1)


def _position_cov(camera: CameraGeometry, points: np.ndarray, along_sigma: np.ndarray) -> np.ndarray:
    """(D, 2, 2): along the line of sight the fused range's uncertainty, across it the keypoint's."""
    sight = points[:, :2] - camera.translation[:2]
    distance = np.linalg.norm(sight, axis=1).clip(min=1e-6)
    e = sight / distance[:, None]
    n = np.stack([-e[:, 1], e[:, 0]], axis=1)
    across = KEYPOINT_SIGMA_PX * distance / camera.fx
    return (along_sigma ** 2)[:, None, None] * e[:, :, None] * e[:, None, :] + \
        (across ** 2)[:, None, None] * n[:, :, None] * n[:, None, :]


def _velocity_cov(paths: np.ndarray, mode_prob: np.ndarray, position: np.ndarray, first_step_s: float,
                  gain: np.ndarray | None = None) -> np.ndarray:
    """(D, 2, 2): the probability-weighted spread of the velocities the modes imply over their first step,
    times the motion prior's ``gain`` (D,) where one applies.

    Where the modes agree this is small; a floor of (0.1 m/s)², added after the gain, keeps it a proper
    covariance even for a gain of 0. The gain scales it once (a posterior's variance, k·σ²), not k² as the
    scaled modes' own spread would: the modes' spread understates the head's real velocity error
    (about 2 m/s for pedestrians, docs/model.md), and k² would tell a planner to trust it more still.
    """
    implied = (paths[:, :, 0] - position[:, None]) / first_step_s  # (D, K, 2)
    mean = (mode_prob[..., None] * implied).sum(1, keepdims=True)
    centred = implied - mean
    cov = np.einsum("dk,dki,dkj->dij", mode_prob, centred, centred)
    if gain is not None:
        cov = gain[:, None, None] * cov
    return cov + np.eye(2) * 0.01


def decode_agents(pred: AgentPrediction, cameras: list[list[CameraGeometry]], stride: int,
                  path_steps_s: tuple[float, ...], threshold: float = 0.3, limit: int = 100,
                  ego_velocity: np.ndarray | None = None, relative_to_ego: bool = True,
                  prior: MotionPrior = MotionPrior()) -> list[DecodedAgents]:
    """Per window of the batch, its agents above ``threshold`` from every camera, merged, best first.

    ``cameras[b][c]`` is camera c of window b as the model saw it (intrinsics at the model's image size).
    ``ego_velocity`` (B, 2) the ego's velocity at the newest frame from odometry (x forward, y left,
    m/s); None: the head's own estimate (``AgentPrediction.ego_velocity``). A non-finite row also
    falls back to the estimate. ``relative_to_ego``: the model's ``agent_motion`` is "ego_relative";
    False (an "absolute" model) ignores the ego's velocity. ``prior``: how far each group's motion is
    trusted (``MotionPrior``; the default trusts it as the head gives it).
    """
    estimate = pred.ego_velocity.detach().float().numpy().reshape(-1, 2).astype(np.float64)
    given = estimate if ego_velocity is None else np.asarray(ego_velocity, np.float64).reshape(-1, 2)
    ego = np.where(np.isfinite(given).all(1, keepdims=True), given, estimate) * float(relative_to_ego)
    times = np.asarray(path_steps_s, np.float64)
    decoded = []
    for b, rig in enumerate(cameras):
        parts = [decode_camera(pred, b, c, camera, stride, times, ego[b], threshold, limit, prior)
                 for c, camera in enumerate(rig)]
        merged = DecodedAgents(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in vars(parts[0])})
        # A non-finite output (a broken model) is no agent: planners must never see NaN positions.
        finite = np.isfinite(merged.position).all(1) & np.isfinite(merged.paths).all((1, 2, 3)) & \
            np.isfinite(merged.velocity).all(1) & np.isfinite(merged.size).all(1)
        decoded.append(_merge_cameras(merged.take(finite)).take(slice(0, limit)))
    return decoded


def _merge_cameras(agents: DecodedAgents) -> DecodedAgents:
    """Best first; a peak of the same group inside a better agent's footprint (grown by MERGE_RADIUS_M)
    is that agent again and is dropped.

    The heat map's 3x3 peak test works in image cells; a truck 12 m long spans many cells and
    can show two maxima, and two cameras see one agent twice. The footprint, in metres, is
    where one agent ends and the next begins.
    """
    order = np.argsort(-agents.score, kind="stable")
    agents = agents.take(order)
    groups = np.array([GROUP_OF_LABEL[int(label)] for label in agents.label], np.int64)
    keep: list[int] = []
    for i in range(len(agents)):
        if not any(groups[j] == groups[i] and _inside_footprint(agents, j, agents.position[i]) for j in keep):
            keep.append(i)
    return agents.take(np.array(keep, np.int64))


def _inside_footprint(agents: DecodedAgents, j: int, point: np.ndarray) -> bool:
    """Whether ``point`` lies within agent ``j``'s box footprint grown by MERGE_RADIUS_M on every side."""
    local = rotate((point - agents.position[j])[None], -agents.heading[j])[0]
    half = agents.size[j, :2] / 2 + MERGE_RADIUS_M
    return bool(abs(local[0]) <= half[0] and abs(local[1]) <= half[1])
