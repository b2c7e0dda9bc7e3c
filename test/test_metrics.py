"""Metrics and baselines on cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcraft_world_model.eval.baselines import constant_velocity, copy_last_frame
from qcraft_world_model.eval.metrics import AgentSample, AgentScores, match_within, psnr, ssim

STEPS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def test_psnr_and_ssim_of_known_images() -> None:
    image = torch.rand(2, 3, 32, 32)
    assert psnr(image, (image + 0.1).clamp(0, 1)).shape == (2,)
    noisy = torch.full((1, 3, 8, 8), 0.5)
    assert psnr(noisy, noisy + 0.1).item() == pytest.approx(20.0, abs=1e-3)  # MSE 0.01
    assert ssim(image, image).min().item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(image, torch.rand(2, 3, 32, 32)).max().item() < 0.2


def test_matching_respects_the_radius() -> None:
    pred = np.array([[0.0, 0.0], [10.0, 0.0], [30.0, 5.0]])
    true = np.array([[10.5, 0.0], [0.0, 1.5], [50.0, 0.0]])
    assert sorted(match_within(pred, true, 2.0)) == [(0, 1), (1, 0)]


def sample(offset_m: float, modes: int = 3) -> AgentSample:
    """One agent driving +x at 10 m/s; predicted paths off by offset_m in y (mode 0) and worse."""
    future = np.stack([np.array(STEPS) * 10, np.zeros(6)], -1)[None]
    paths = np.stack([future[0] + [0, offset_m * (k + 1)] for k in range(modes)])[None]
    return AgentSample(true_position=np.zeros((1, 2)), true_future=future, true_valid=np.ones((1, 6), bool),
                       pred_position=np.zeros((1, 2)), pred_paths=paths)


def test_ade_fde_and_miss_rate() -> None:
    scores = AgentScores(STEPS)
    scores.add(sample(1.0))
    scores.add(sample(3.0))
    summary = scores.summary()
    assert summary["recall_2m"] == 1.0 and summary["precision_2m"] == 1.0
    assert summary["minFDE_1"]["3s"] == pytest.approx(2.0)  # mean of 1 and 3
    assert summary["minADE_1"]["1s"] == pytest.approx(2.0)
    assert summary["miss_rate_1"] == pytest.approx(0.5)  # the 3 m-off agent is a miss
    assert summary["scene_accuracy"] == pytest.approx(0.5)


def test_unmatched_truth_lowers_recall_and_extra_detections_precision() -> None:
    scores = AgentScores(STEPS)
    extra = sample(0.0)
    extra.pred_position = np.array([[0.0, 0.0], [40.0, 0.0]])
    extra.pred_paths = np.concatenate([extra.pred_paths, extra.pred_paths])
    extra.true_position = np.array([[0.0, 0.0], [0.0, 20.0]])
    extra.true_future = np.concatenate([extra.true_future, extra.true_future])
    extra.true_valid = np.ones((2, 6), bool)
    summary = (scores.add(extra), scores.summary())[1]
    assert summary["recall_2m"] == 0.5 and summary["precision_2m"] == 0.5


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
