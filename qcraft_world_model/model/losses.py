"""Training losses: future-frame MSE, and the dense agent head's CenterNet-style losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from qcraft_world_model.model.detection import AgentPrediction


@dataclass
class AgentTargets:
    """Dense targets for a batch (built by ``train/agent_targets.py``). M positives, each at
    (batch, camera, row, col) of the head's grid."""

    heatmap: torch.Tensor  # (B, C, groups, h, w) in [0, 1], 1 at each agent's cell
    index: torch.Tensor  # (M, 4) long: b, c, row, col
    offset: torch.Tensor  # (M, 2) sub-cell position (x, y) in [0, 1)
    log_depth: torch.Tensor  # (M,)
    heading: torch.Tensor  # (M,) heading minus bearing, radians
    log_size: torch.Tensor  # (M, 3)
    velocity: torch.Tensor  # (M, 2) m/s relative to the ego's, bearing frame
    future: torch.Tensor  # (M, P, 2) displacement from now minus the ego's at constant velocity, m, bearing frame
    future_valid: torch.Tensor  # (M, P) bool
    label: torch.Tensor  # (M,) Autoware label
    ego_velocity: torch.Tensor  # (B, 2) the ego's velocity at t0 (x forward, y left), m/s

    def to(self, device: torch.device | str) -> AgentTargets:
        return AgentTargets(**{k: v.to(device) for k, v in vars(self).items()})


#: Distances enter the losses in units of this many metres, so that metre-scale
#: errors (tens of metres early in training) do not drown the frame loss's
#: gradients under the global gradient-norm clip.
METRES_PER_UNIT = 5.0


@dataclass(frozen=True)
class LossWeights:
    frames: float = 300.0
    heatmap: float = 1.0
    offset: float = 1.0
    depth: float = 1.0
    heading: float = 0.5
    size: float = 0.5
    velocity: float = 0.5
    ego: float = 0.5
    classes: float = 0.3
    paths: float = 1.0
    modes: float = 0.2


AGENT_LOSSES = ("heatmap", "ego", "offset", "depth", "heading", "size", "velocity", "classes", "paths", "modes")


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the number of peaks."""
    prob = logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    peak = target.eq(1.0).float()
    positive = -torch.log(prob) * (1 - prob) ** 2 * peak
    negative = -torch.log(1 - prob) * prob ** 2 * (1 - target) ** 4 * (1 - peak)
    return (positive.sum() + negative.sum()) / peak.sum().clamp(min=1.0)


def _at(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, K, h, w) maps at the M cells ``index`` (b, c, row, col) → (M, K)."""
    b, c, row, col = index.unbind(1)
    return maps[b, c, :, row, col]


def agent_losses(pred: AgentPrediction, targets: AgentTargets) -> dict[str, torch.Tensor]:
    """Heat map and ego velocity everywhere; the rest at the cells that hold an agent (paths
    winner-takes-all over modes)."""
    losses = {"heatmap": focal_heatmap_loss(pred.heatmap, targets.heatmap),
              "ego": F.smooth_l1_loss(pred.ego_velocity.float() / METRES_PER_UNIT,
                                      targets.ego_velocity / METRES_PER_UNIT)}
    zero = pred.offset.sum() * 0.0
    if len(targets.index) == 0:
        return {**losses, **{k: zero for k in AGENT_LOSSES[2:]}}
    index = targets.index
    losses["offset"] = F.l1_loss(_at(pred.offset, index), targets.offset)
    losses["depth"] = F.l1_loss(_at(pred.log_depth, index)[:, 0], targets.log_depth)
    heading = F.normalize(_at(pred.heading, index), dim=-1, eps=1e-6)
    losses["heading"] = (1.0 - heading[:, 0] * torch.cos(targets.heading)
                         - heading[:, 1] * torch.sin(targets.heading)).mean()
    losses["size"] = F.smooth_l1_loss(_at(pred.log_size, index), targets.log_size)
    losses["velocity"] = F.smooth_l1_loss(_at(pred.velocity, index) / METRES_PER_UNIT,
                                          targets.velocity / METRES_PER_UNIT)
    losses["classes"] = F.cross_entropy(_at(pred.class_logits, index), targets.label)
    m, (steps, modes) = len(index), (targets.future.shape[1], pred.mode_logits.shape[2])
    paths = _at(pred.paths, index).view(m, modes, steps, 2)
    valid = targets.future_valid.unsqueeze(1).float()  # (M, 1, P)
    error = (paths - targets.future.unsqueeze(1)).norm(dim=-1) / METRES_PER_UNIT  # (M, K, P)
    per_mode = (error * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)  # (M, K) mean displacement
    best = per_mode.argmin(dim=1)
    has_future = valid.sum((-1, -2)) > 0
    if has_future.any():
        losses["paths"] = per_mode[has_future, best[has_future]].mean()
        losses["modes"] = F.cross_entropy(_at(pred.mode_logits, index)[has_future], best[has_future])
    else:
        losses["paths"] = losses["modes"] = zero
    return losses


def total_loss(frames_pred: torch.Tensor, frames_true: torch.Tensor, pred: AgentPrediction,
               targets: AgentTargets, weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum and its parts (as floats, for logging).

    Frames: mean squared error. Under L1 the best answer for an uncertain edge is
    "it stays" (the median), which pins the decoder to copy-last-frame; the mean
    that MSE asks for is also what PSNR scores.
    """
    parts = {"frames": F.mse_loss(frames_pred, frames_true), **agent_losses(pred, targets)}
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}
