"""Simple baselines the model must beat, on the same data and the same agents."""

from __future__ import annotations

import numpy as np
import torch


def copy_last_frame(window: torch.Tensor, horizons: int) -> torch.Tensor:
    """Every future frame = the newest frame. window (B, C, T, 3, H, W) uint8 → (B, C, horizons, 3, H, W)."""
    last = window[:, :, -1].float() / 255.0
    return last.unsqueeze(2).expand(-1, -1, horizons, -1, -1, -1)


def constant_velocity(past: np.ndarray, valid: np.ndarray, steps_s: np.ndarray, rate_hz: float = 10.0,
                      lookback_s: float = 0.5) -> np.ndarray | None:
    """Extrapolate the ground-truth past at its latest velocity (oracle perception).

    past (S, 2) positions up to t0 (the last row), valid (S,). The velocity is the
    displacement over the last ``lookback_s`` (or the longest valid span within it).
    Returns (P, 2) positions at ``steps_s`` after t0, or None without a valid t0.
    """
    if not valid[-1]:
        return None
    back = int(round(lookback_s * rate_hz))
    for lag in range(back, 0, -1):
        if len(past) > lag and valid[-1 - lag]:
            velocity = (past[-1] - past[-1 - lag]) * rate_hz / lag
            break
    else:
        velocity = np.zeros(2)
    return past[-1] + velocity * steps_s[:, None]
