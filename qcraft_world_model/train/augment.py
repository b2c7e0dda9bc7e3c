"""Augmentation: each training clip seen through another camera's colour response (``PhotometricJitter``)
and another lens (``LensZoom``).

The scenes are rendered with one palette, one exposure and no sensor noise; a real
camera (or another renderer) differs in all three. A model that never saw those
differences reads them as new objects (docs/model.md: "generality"). So each clip
of a batch gets its own random exposure gain, white balance, gamma and contrast,
applied *identically* to its input window and to the future frames the decoder
must predict (the camera does not change its response between past and future),
and a little sensor noise on the inputs only (the decoder should predict the
scene, not the noise).

The colour response leaves geometry untouched: agents, cameras and ego motion keep
their values, so the agent targets need no change. The lens changes the cameras'
intrinsics with the frames, and the targets are built from the changed cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from qcraft_world_model.model.geometry import CameraGeometry


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


@dataclass(frozen=True)
class LensZoom:
    """Geometric augmentation: each training clip seen through a longer lens with non-square pixels.

    Every clip is rendered through a square-pixel pinhole. A camera read at the model's size often is
    not one: a 1600x900 camera stretched to 256x128 has fy = 0.89 fx, and another vehicle's lens has
    another focal length. So each clip is magnified about the image centre by its own factors zx, zy
    drawn from [1, 1 + ``max_zoom`` x strength] (independently: fy/fx from 1/1.15 to 1.15 at the
    default) and cropped back to its size, the window and the future frames alike, and its cameras'
    intrinsics follow exactly (fx' = zx fx, cx' = W/2 + zx (cx - W/2), the same in y), so the agent
    targets are built with the lens the frames show. Crop only, never padding: no border a real camera
    lacks. Agents, ego motion and the rendered visible shares keep their values (an agent the crop cuts
    at the edge becomes a cut agent, whose target the edge rule already places).
    """

    strength: float = 1.0
    max_zoom: float = 0.15

    def factors(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(B, 2) zx, zy per clip, from ``generator`` only."""
        return 1 + self.strength * self.max_zoom * torch.rand(batch, 2, generator=generator)

    def __call__(self, window: torch.Tensor, future: torch.Tensor, cameras: list[list[CameraGeometry]],
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[list[CameraGeometry]]]:
        """window (B, C, T, 3, H, W) uint8, future (B, C, F, 3, H, W) float and the clips' cameras → the
        same seen through each clip's zoom."""
        if self.strength <= 0:
            return window, future, cameras
        batch = window.shape[0]
        zoom = self.factors(batch, generator)
        # grid_sample reads output pixel x (normalised, align_corners=False) at input x / z: a magnification
        # by z about the image centre.
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = 1 / zoom[:, 0], 1 / zoom[:, 1]

        def magnify(frames: torch.Tensor) -> torch.Tensor:
            b, c, t = frames.shape[:3]
            flat = frames.reshape(b, c * t * 3, *frames.shape[-2:]).float()
            grid = torch.nn.functional.affine_grid(theta, list(flat.shape), align_corners=False)
            out = torch.nn.functional.grid_sample(flat, grid, mode="bilinear", padding_mode="border",
                                                  align_corners=False)
            return out.reshape(frames.shape)

        seen = magnify(window).round().clamp(0, 255).to(torch.uint8)
        ahead = magnify(future).clamp(0, 1)
        zoomed = [[replace(camera, fx=camera.fx * float(zx), fy=camera.fy * float(zy),
                           cx=camera.width / 2 + float(zx) * (camera.cx - camera.width / 2),
                           cy=camera.height / 2 + float(zy) * (camera.cy - camera.height / 2)) for camera in rig]
                  for rig, (zx, zy) in zip(cameras, zoom.tolist())]
        return seen, ahead, zoomed
