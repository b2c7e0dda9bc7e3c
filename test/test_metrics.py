"""Metrics and baselines on cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcraft_world_model.eval.baselines import constant_velocity, copy_last_frame
from qcraft_world_model.eval.metrics import psnr, ssim

STEPS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def test_psnr_and_ssim_of_known_images() -> None:
    image = torch.rand(2, 3, 32, 32)
    assert psnr(image, (image + 0.1).clamp(0, 1)).shape == (2,)
    noisy = torch.full((1, 3, 8, 8), 0.5)
    assert psnr(noisy, noisy + 0.1).item() == pytest.approx(20.0, abs=1e-3)  # MSE 0.01
    assert ssim(image, image).min().item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(image, torch.rand(2, 3, 32, 32)).max().item() < 0.2


def test_constant_velocity_extrapolates_the_past_exactly_on_a_straight_line() -> None:
    past = np.stack([np.arange(16) * 1.2, np.zeros(16)], -1)  # 12 m/s at 10 Hz
    path = constant_velocity(past, np.ones(16, bool), np.array(STEPS))
    np.testing.assert_allclose(path[:, 0], past[-1, 0] + 12 * np.array(STEPS))
    assert constant_velocity(past, np.r_[np.ones(15, bool), False], np.array(STEPS)) is None


def test_copy_last_frame_repeats_the_newest_frame() -> None:
    window = torch.randint(0, 256, (2, 1, 16, 3, 8, 8), dtype=torch.uint8)
    frames = copy_last_frame(window, 5)
    assert frames.shape == (2, 1, 5, 3, 8, 8)
    assert torch.equal(frames[:, :, 3], window[:, :, -1].float() / 255)
