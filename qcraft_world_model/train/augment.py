"""Photometric augmentation: each training clip seen through another camera's colour response.

The scenes are rendered with one palette, one exposure and no sensor noise; a real
camera (or another renderer) differs in all three. A model that never saw those
differences reads them as new objects (docs/model.md: "generality"). So each clip
of a batch gets its own random exposure gain, white balance, gamma and contrast,
applied *identically* to its input window and to the future frames the decoder
must predict (the camera does not change its response between past and future),
and a little sensor noise on the inputs only (the decoder should predict the
scene, not the noise).

Geometry is untouched: agents, cameras and ego motion keep their values, so the
agent targets need no change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PhotometricJitter:
    """Ranges of the per-clip colour response; ``strength`` scales all of them (0: off)."""

    strength: float = 1.0
    gain: float = 0.25  # exposure: x (1 ± gain)
    white_balance: float = 0.08  # per channel: x (1 ± white_balance)
    gamma: float = 0.25  # x ** (1 ± gamma)
    contrast: float = 0.2  # around mid grey: (x - 0.5) (1 ± contrast) + 0.5
    noise: float = 0.01  # Gaussian sensor noise on the inputs, std in [0, 1] units

    def __call__(self, window: torch.Tensor, future: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """window (B, C, T, 3, H, W) uint8 and future (B, C, F, 3, H, W) float in [0, 1] → the same,
        each clip (row of B) with its own response; the random draws come from ``generator`` only."""
        if self.strength <= 0:
            return window, future
        batch = window.shape[0]

        def uniform(spread: float, *shape: int) -> torch.Tensor:
            return 1 + self.strength * spread * (2 * torch.rand(batch, *shape, generator=generator) - 1)

        shape = (batch, 1, 1, 3, 1, 1)
        gain = (uniform(self.gain, 1) * torch.ones(batch, 3)).view(shape) * uniform(self.white_balance, 3).view(shape)
        gamma = uniform(self.gamma, 1).view(batch, 1, 1, 1, 1, 1)
        contrast = uniform(self.contrast, 1).view(batch, 1, 1, 1, 1, 1)

        def respond(x: torch.Tensor) -> torch.Tensor:
            x = (x.clamp(0, 1) ** gamma) * gain
            return ((x - 0.5) * contrast + 0.5).clamp(0, 1)

        seen = respond(window.float() / 255.0)
        if self.noise > 0:
            noise = torch.randn(seen.shape, generator=generator) * (self.strength * self.noise)
            seen = (seen + noise).clamp(0, 1)
        return (seen * 255.0).round().to(torch.uint8), respond(future)
