"""Agent metrics of the field, on hand-made windows whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from qcraft_world_model.eval.agent_metrics import (WindowAgents, average_precision, baseline_scores,
                                                   operating_point, score_windows)

STEPS_S = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


def window(true_xy, pred_xy, scores=None, labels=None, pred_labels=None, in_scope=None, ignore=None,
           velocity=(5.0, 0.0), pred_paths=None) -> WindowAgents:  # noqa: ANN001
    true_xy, pred_xy = np.asarray(true_xy, float).reshape(-1, 2), np.asarray(pred_xy, float).reshape(-1, 2)
    g, d = len(true_xy), len(pred_xy)
    v = np.tile(velocity, (g, 1))
    future = true_xy[:, None] + v[:, None] * STEPS_S[None, :, None]
    if pred_paths is None:
        pred_paths = (pred_xy[:, None] + np.array(velocity) * STEPS_S[:, None])[:, None].repeat(3, 1)
    return WindowAgents(
        true_position=true_xy, true_heading=np.zeros(g), true_size=np.tile([4.5, 1.8, 1.5], (g, 1)), true_velocity=v,
        true_label=np.ones(g, int) if labels is None else np.asarray(labels), true_future=future,
        true_future_valid=np.ones((g, len(STEPS_S)), bool), true_visibility=np.full(g, np.nan),
        in_scope=np.ones(g, bool) if in_scope is None else np.asarray(in_scope),
        ignore=np.zeros(g, bool) if ignore is None else np.asarray(ignore),
        score=np.full(d, 0.9) if scores is None else np.asarray(scores, float),
        label=np.ones(d, int) if pred_labels is None else np.asarray(pred_labels), position=pred_xy,
        heading=np.zeros(d), size=np.tile([4.5, 1.8, 1.5], (d, 1)), velocity=np.tile(velocity, (d, 1)),
        paths=pred_paths, sensor_xy=np.array([1.2, 0.0]),
        baselines={"cv": future[:, None]})


def test_perfect_detections_score_one_everywhere() -> None:
    w = window([[10, 0], [25, 3]], [[10, 0], [25, 3]])
    result = operating_point([w], 0.5, STEPS_S, 3)
    assert result["recall_2m"] == result["precision_2m"] == result["let_recall"] == 1.0
    assert result["ate"] == 0.0 and result["ase"] == pytest.approx(0.0) and result["epa"] == 1.0
    assert result["minFDE_K"]["3s"] == 0.0 and result["miss_rate_K"] == 0.0
    for threshold in (0.5, 1.0, 2.0, 4.0):
        assert average_precision([w], 0, threshold) == pytest.approx(1.0)


def test_let_tolerates_range_error_along_the_line_of_sight_only() -> None:
    truth = [[41.2, 0.0]]  # 40 m straight ahead of the camera (at x = 1.2)
    along = operating_point([window(truth, [[44.7, 0.0]])], 0.5, STEPS_S, 3)  # 3.5 m too far: ≤ max(2, 4)
    assert along["recall_2m"] == 0.0 and along["let_recall"] == 1.0 and along["let_precision"] == 1.0
    across = operating_point([window(truth, [[41.2, 3.5]])], 0.5, STEPS_S, 3)  # 3.5 m to the side
    assert across["let_recall"] == 0.0 and across["let_precision"] == 0.0


def test_predictions_on_ignored_agents_are_neither_right_nor_wrong() -> None:
    w = window([[10, 0], [20, 5]], [[10, 0], [20, 5]], in_scope=[True, False], ignore=[False, True])
    result = operating_point([w], 0.5, STEPS_S, 3)
    assert result["true_agents"] == 1 and result["precision_2m"] == 1.0 and result["detections"] == 1
    assert average_precision([w], 0, 2.0) == pytest.approx(1.0)


def test_false_positives_lower_precision_ap_and_epa() -> None:
    w = window([[10, 0]], [[10, 0], [30, -8]], scores=[0.6, 0.9])  # the wrong one is the more confident
    result = operating_point([w], 0.5, STEPS_S, 3)
    assert result["precision_2m"] == 0.5 and result["recall_2m"] == 1.0
    assert result["epa"] == pytest.approx((1 - 0.5 * 1) / 1)
    assert average_precision([w], 0, 2.0) < 0.6


def test_wrong_class_group_is_not_a_match() -> None:
    w = window([[10, 0]], [[10, 0]], pred_labels=[7])  # a pedestrian where a car is
    assert operating_point([w], 0.5, STEPS_S, 3)["recall_2m"] == 0.0


def test_a_detected_agent_with_a_bad_forecast_is_not_an_epa_hit() -> None:
    bad = np.array([[[10.0, 0.0]] * len(STEPS_S)] * 3)  # stands still; the truth drives 15 m in 3 s
    result = operating_point([window([[10, 0]], [[10, 0]], pred_paths=bad[None])], 0.5, STEPS_S, 3)
    assert result["recall_2m"] == 1.0 and result["epa"] == 0.0 and result["miss_rate_K"] == 1.0
    assert result["minFDE_1"]["3s"] == pytest.approx(15.0)


def test_bands_and_baselines_cover_every_agent() -> None:
    windows = [window([[5, 0], [15, 2], [25, -3], [45, 1]], [[5, 0], [15, 2]])]
    result = score_windows(windows, 0.5, STEPS_S, 3)
    assert result["by_range"]["0-10"]["recall_2m"] == 1.0 and result["by_range"]["20-30"]["recall_2m"] == 0.0
    assert result["by_range"]["30-50"]["true_agents"] == 1
    assert result["targets"]["car_30m"]["true_agents"] == 3
    base = baseline_scores(windows, 0.5, STEPS_S)["cv"]
    assert base["same_agents"]["agents"] == 2 and base["all_agents"]["agents"] == 4
    assert base["all_agents"]["epa"] == 1.0


def test_a_false_positive_counts_in_the_band_of_its_own_range_only() -> None:
    """nuScenes' range convention, the one average_precision already used: an unmatched detection at
    40 m is a false positive of the 30-50 m band and of nothing within 30 m; a match counts by the
    truth's range even when the detection lies across a band edge."""
    windows = [window([[5, 0], [29.5, 0]], [[5, 0], [40, 3], [31.0, 0]])]  # the 31 m one matches the 29.5 m car
    result = score_windows(windows, 0.5, STEPS_S, 3)
    near = result["by_range"]["0-10"]
    assert (near["matched"], near["detections"], near["precision_2m"]) == (1, 1, 1.0)
    far = result["by_range"]["30-50"]
    assert (far["true_agents"], far["detections"], far["precision_2m"]) == (0, 1, 0.0)
    assert result["by_range"]["20-30"]["precision_2m"] == 1.0
    car = result["targets"]["car_30m"]
    assert (car["true_agents"], car["matched"], car["precision_2m"]) == (2, 2, 1.0)
    overall = operating_point(windows, 0.5, STEPS_S, 3)
    assert overall["precision_2m"] == pytest.approx(2 / 3, abs=1e-4)  # no band: every detection counts


def test_cars_cut_by_the_image_edge_are_reported_apart_within_30_m() -> None:
    """Three cars within 30 m, two of them with their centre outside the image (cut by its edge); one of
    those is found: the cut subset's recall is 1/2; the car at 40 m is outside the set; without the
    in-view flag the subset is not reported."""
    w = window([[10, 0], [12, -12], [15, 16], [40, -45]], [[10, 0], [12, -12]])
    w = WindowAgents(**{**vars(w), "true_in_view": np.array([True, False, False, False])})
    targets = score_windows([w], 0.5, STEPS_S, 3)["targets"]
    cut = targets["car_30m_cut_by_image_edge"]
    assert (cut["true_agents"], cut["matched"], cut["recall_2m"], cut["let_recall"]) == (2, 1, 0.5, 0.5)
    assert targets["car_30m"]["true_agents"] == 3
    assert "car_30m_cut_by_image_edge" not in score_windows([window([[10, 0]], [[10, 0]])], 0.5, STEPS_S, 3)["targets"]


def test_the_target_sets_are_also_reported_along_the_score_thresholds() -> None:
    """A confident right car and a weak right one: below the weak one's score both are found."""
    w = window([[10, 0], [20, 3]], [[10, 0], [20, 3]], scores=[0.9, 0.3])
    curve = score_windows([w], 0.5, STEPS_S, 3)["targets_by_threshold"]
    assert curve["0.25"]["car_30m"]["let_recall"] == 1.0 and curve["0.5"]["car_30m"]["let_recall"] == 0.5
    assert curve["0.5"]["car_30m"] == {k: score_windows([w], 0.5, STEPS_S, 3)["targets"]["car_30m"][k]
                                       for k in ("recall_2m", "precision_2m", "let_recall", "let_precision",
                                                 "matched")}
