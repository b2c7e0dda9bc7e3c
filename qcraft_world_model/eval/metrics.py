"""Honest metrics: image quality of predicted frames, and detection + trajectory errors for agents.

Definitions (docs/DESIGN contracts): predictions are matched to ground truth at
t0 within 2 m (Hungarian on distance); recall/precision count those matches;
for matched agents, minADE_k / minFDE_k take the best of the k most confident
paths, at 1, 2 and 3 s; a *miss* is when every one of the top-k paths has a
maximum pointwise error of 2 m or more (nuScenes). Scene accuracy is the share
of ground-truth agents that are detected and not missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

MATCH_RADIUS_M = 2.0
MISS_THRESHOLD_M = 2.0


def psnr(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per image PSNR in dB for images in [0, 1], shape (..., 3, H, W) → (...)."""
    mse = ((pred - true) ** 2).flatten(-3).mean(-1).clamp(min=1e-10)
    return 10 * torch.log10(1.0 / mse)


def ssim(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per image SSIM (Gaussian window 11, sigma 1.5, on luma), (..., 3, H, W) → (...)."""
    lead = pred.shape[:-3]
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=pred.dtype).view(3, 1, 1)
    x = (pred * weights).sum(-3).reshape(-1, 1, *pred.shape[-2:])
    y = (true * weights).sum(-3).reshape(-1, 1, *true.shape[-2:])
    g = torch.exp(-((torch.arange(11, dtype=pred.dtype) - 5) ** 2) / (2 * 1.5 ** 2))
    g = (g / g.sum()).view(1, 1, 1, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, g), g.transpose(-1, -2))

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return value.flatten(1).mean(-1).reshape(lead)


@dataclass
class AgentSample:
    """One clip's agents for evaluation, ego frame at t0."""

    #: Ground truth: (G, 2) positions at t0, (G, P, 2) future at the path steps, (G, P) valid.
    true_position: np.ndarray
    true_future: np.ndarray
    true_valid: np.ndarray
    #: Predictions: (D, 2) positions, (D, K, P, 2) paths sorted by confidence (best first).
    pred_position: np.ndarray
    pred_paths: np.ndarray


@dataclass
class AgentScores:
    """Accumulates detection and trajectory errors over clips."""

    path_steps_s: tuple[float, ...]
    horizons_s: tuple[float, ...] = (1.0, 2.0, 3.0)
    ks: tuple[int, ...] = (1, 3)
    true_agents: int = 0
    detections: int = 0
    matched: int = 0
    detected_not_missed: int = 0
    #: (k, horizon) → per-agent ADE / FDE lists.
    ade: dict[tuple[int, float], list[float]] = field(default_factory=dict)
    fde: dict[tuple[int, float], list[float]] = field(default_factory=dict)
    misses: dict[int, list[bool]] = field(default_factory=dict)

    def add(self, sample: AgentSample) -> list[tuple[int, int]]:
        """Score one clip; returns the (prediction, truth) matches for reuse by baselines."""
        self.true_agents += len(sample.true_position)
        self.detections += len(sample.pred_position)
        pairs = match_within(sample.pred_position, sample.true_position, MATCH_RADIUS_M)
        self.matched += len(pairs)
        for p, t in pairs:
            missed = self._score_paths(sample.pred_paths[p], sample.true_future[t], sample.true_valid[t])
            self.detected_not_missed += not missed
        return pairs

    def add_paths(self, paths: np.ndarray, future: np.ndarray, valid: np.ndarray) -> None:
        """Score paths of an already matched agent (a baseline on the model's matches)."""
        self.matched += 1
        self.detected_not_missed += not self._score_paths(paths, future, valid)

    def _score_paths(self, paths: np.ndarray, future: np.ndarray, valid: np.ndarray) -> bool:
        """Record ADE/FDE for one agent; return whether it is a miss (top-max(k) paths, full horizon)."""
        errors = np.linalg.norm(paths - future[None], axis=-1)  # (K, P)
        steps = np.asarray(self.path_steps_s)
        missed = True
        for k in self.ks:
            top = errors[:k]
            for horizon in self.horizons_s:
                upto = (steps <= horizon + 1e-6) & valid
                end = int(np.searchsorted(steps, horizon + 1e-6)) - 1
                if upto.any():
                    self.ade.setdefault((k, horizon), []).append(float(top[:, upto].mean(1).min()))
                if end >= 0 and valid[end]:
                    self.fde.setdefault((k, horizon), []).append(float(top[:, end].min()))
            if valid.any():
                miss = bool((top[:, valid].max(1) >= MISS_THRESHOLD_M).all())
                self.misses.setdefault(k, []).append(miss)
                if k == max(self.ks):
                    missed = miss
        return missed

    def summary(self) -> dict:
        def per_horizon(table: dict, k: int) -> dict[str, float | None]:
            return {f"{h:g}s": (float(np.mean(table[(k, h)])) if table.get((k, h)) else None) for h in self.horizons_s}

        result: dict = {
            "true_agents": self.true_agents, "detections": self.detections, "matched": self.matched,
            "recall_2m": self.matched / self.true_agents if self.true_agents else None,
            "precision_2m": self.matched / self.detections if self.detections else None,
            "scene_accuracy": self.detected_not_missed / self.true_agents if self.true_agents else None,
        }
        for k in self.ks:
            result[f"minADE_{k}"] = per_horizon(self.ade, k)
            result[f"minFDE_{k}"] = per_horizon(self.fde, k)
            result[f"miss_rate_{k}"] = float(np.mean(self.misses[k])) if self.misses.get(k) else None
        return result


def match_within(pred: np.ndarray, true: np.ndarray, radius: float) -> list[tuple[int, int]]:
    """Hungarian matching of positions; pairs farther apart than ``radius`` are dropped."""
    if len(pred) == 0 or len(true) == 0:
        return []
    distance = np.linalg.norm(pred[:, None] - true[None], axis=-1)
    rows, cols = linear_sum_assignment(np.where(distance <= radius, distance, 1e6))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if distance[r, c] <= radius]
