"""Image quality of predicted frames: PSNR and SSIM (agent metrics: agent_metrics.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F



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
