"""Training losses: future-frame L1, and agents matched to ground truth by the Hungarian method."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from qcraft_world_model.model.heads import AgentPrediction


@dataclass
class AgentTargets:
    """Ground truth per clip, padded to G agents (``mask`` marks real ones); ego frame at t0."""

    mask: torch.Tensor  # (B, G) bool
    label: torch.Tensor  # (B, G) long
    position: torch.Tensor  # (B, G, 2)
    heading: torch.Tensor  # (B, G)
    size: torch.Tensor  # (B, G, 3)
    future: torch.Tensor  # (B, G, P, 2) box centre at the model's path steps
    future_valid: torch.Tensor  # (B, G, P) bool


#: Distances enter the losses in units of this many metres, so that metre-scale
#: errors (tens of metres early in training) do not drown the frame loss's
#: gradients under the global gradient-norm clip.
METRES_PER_UNIT = 5.0


@dataclass(frozen=True)
class LossWeights:
    frames: float = 300.0
    existence: float = 1.0
    classes: float = 0.5
    position: float = 1.0
    heading: float = 0.5
    size: float = 0.5
    paths: float = 1.0
    modes: float = 0.2
    #: Matching cost: metres of position error worth one unit of class probability.
    match_position: float = 0.2


def hungarian_match(pred: AgentPrediction, targets: AgentTargets, weights: LossWeights
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per clip, (prediction slots, target indices) of the lowest-cost one-to-one assignment."""
    with torch.no_grad():
        probs = pred.class_logits.softmax(-1)
        exist = pred.existence_logit.sigmoid()
        matches = []
        for b in range(pred.position.shape[0]):
            real = targets.mask[b].nonzero().squeeze(-1)
            if real.numel() == 0:
                matches.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            distance = torch.cdist(pred.position[b], targets.position[b, real])  # (A, G)
            class_prob = probs[b][:, targets.label[b, real]]  # (A, G)
            cost = weights.match_position * distance - class_prob - exist[b].unsqueeze(1)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            matches.append((rows, real.cpu().numpy()[cols]))
    return matches


def agent_losses(pred: AgentPrediction, targets: AgentTargets, weights: LossWeights) -> dict[str, torch.Tensor]:
    """Existence for every slot; class, box and paths for matched slots (winner-takes-all over modes)."""
    matches = hungarian_match(pred, targets, weights)
    b_idx = torch.cat([torch.full((len(r),), b, dtype=torch.long) for b, (r, _) in enumerate(matches)])
    p_idx = torch.cat([torch.as_tensor(r, dtype=torch.long) for r, _ in matches])
    t_idx = torch.cat([torch.as_tensor(c, dtype=torch.long) for _, c in matches])
    existence_target = torch.zeros_like(pred.existence_logit)
    existence_target[b_idx, p_idx] = 1.0
    losses = {"existence": F.binary_cross_entropy_with_logits(pred.existence_logit, existence_target)}
    zero = pred.position.sum() * 0.0
    if len(b_idx) == 0:
        return {**losses, **{k: zero for k in ("classes", "position", "heading", "size", "paths", "modes")}}

    losses["classes"] = F.cross_entropy(pred.class_logits[b_idx, p_idx], targets.label[b_idx, t_idx])
    losses["position"] = F.smooth_l1_loss(pred.position[b_idx, p_idx] / METRES_PER_UNIT,
                                          targets.position[b_idx, t_idx] / METRES_PER_UNIT)
    heading = F.normalize(pred.heading[b_idx, p_idx], dim=-1, eps=1e-6)
    true_heading = targets.heading[b_idx, t_idx]
    losses["heading"] = (1.0 - (heading[:, 0] * torch.cos(true_heading) + heading[:, 1] * torch.sin(true_heading))).mean()
    losses["size"] = F.smooth_l1_loss(pred.log_size[b_idx, p_idx], torch.log(targets.size[b_idx, t_idx].clamp(min=0.1)))

    paths = pred.paths[b_idx, p_idx]  # (M, K, P, 2)
    future = targets.future[b_idx, t_idx].unsqueeze(1)  # (M, 1, P, 2)
    valid = targets.future_valid[b_idx, t_idx].unsqueeze(1).float()  # (M, 1, P)
    error = (paths - future).norm(dim=-1) / METRES_PER_UNIT  # (M, K, P)
    per_mode = (error * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)  # (M, K) mean displacement
    best = per_mode.argmin(dim=1)
    has_future = valid.sum((-1, -2)) > 0
    if has_future.any():
        losses["paths"] = per_mode[has_future, best[has_future]].mean()
        losses["modes"] = F.cross_entropy(pred.mode_logits[b_idx, p_idx][has_future], best[has_future])
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
    parts = {"frames": F.mse_loss(frames_pred, frames_true), **agent_losses(pred, targets, weights)}
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}
