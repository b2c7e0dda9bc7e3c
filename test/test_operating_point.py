"""The operating point: per class group score thresholds, how evaluation reports at them, and how
``fit-operating-point`` chooses them on hand-made windows whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from qcraft_world_model.eval.agent_metrics import score_windows
from qcraft_world_model.eval.operating_point import (MIN_AGENTS, choose_threshold, fit_operating_point,
                                                     precision_lower_bound)
from qcraft_world_model.model.agent_decode import OperatingPoint
from test_agent_metrics import STEPS_S, window

CAR, PEDESTRIAN = 1, 7  # Autoware labels


def test_an_operating_point_holds_one_threshold_in_0_to_1_per_group() -> None:
    assert OperatingPoint() == OperatingPoint.uniform(0.5)
    point = OperatingPoint((0.35, 0.6, 0.5))
    reported = point.reported(np.array([0.4, 0.4, 0.7, 0.3]), np.array([CAR, PEDESTRIAN, PEDESTRIAN, 2]))
    assert reported.tolist() == [True, False, True, False]  # a truck (2) is a car: 0.3 < 0.35
    assert point.lowest() == 0.35 and point.as_dict() == {"car": 0.35, "pedestrian": 0.6, "bicycle": 0.5}
    for bad in ((0.5, 0.5), (0.5, 0.5, 1.5), (0.5, float("nan"), 0.5), (True, 0.5, 0.5)):
        with pytest.raises(ValueError, match="3 score thresholds in 0..1"):
            OperatingPoint(bad)


def test_evaluation_reports_each_group_at_its_own_threshold() -> None:
    """A weak car (0.3) counts under a car threshold of 0.25; a pedestrian at 0.4 does not under 0.5."""
    w = window([[10, 0], [20, 3], [8, 2]], [[10, 0], [20, 3], [8, 2]], scores=[0.9, 0.3, 0.4],
               labels=[CAR, CAR, PEDESTRIAN], pred_labels=[CAR, CAR, PEDESTRIAN])
    fixed = score_windows([w], 0.5, STEPS_S, 3)
    own = score_windows([w], OperatingPoint((0.25, 0.5, 0.5)), STEPS_S, 3)
    assert fixed["targets"]["car_30m"]["let_recall"] == 0.5 and own["targets"]["car_30m"]["let_recall"] == 1.0
    assert own["targets"]["pedestrian_20m"]["recall_2m"] == 0.0
    assert own["threshold"] == {"car": 0.25, "pedestrian": 0.5, "bicycle": 0.5} and fixed["threshold"] == 0.5
    # The sweep is the same curve whatever the operating point.
    assert own["targets_by_threshold"] == fixed["targets_by_threshold"]


def _episodes(false_score: float, count: int = 40, per_episode: int = 4) -> tuple[list, list[str]]:
    """``count`` windows, each a car at 10 m found at 0.8 and a false car at ``false_score`` 5 m beside."""
    windows = [window([[10, 0]], [[10, 0], [10, 5]], scores=[0.8, false_score], labels=[CAR],
                      pred_labels=[CAR, CAR]) for _ in range(count)]
    return windows, [f"episode{i // per_episode}" for i in range(count)]


def test_the_lowest_threshold_that_keeps_precision_is_chosen() -> None:
    """Every window: a true car at 0.8 and a false one at 0.3. Below 0.3 precision is 0.5, above it 1:
    the car threshold is the first grid point above 0.3. No pedestrian or bicycle: they keep 0.5."""
    windows, episodes = _episodes(0.3)
    point, record = fit_operating_point(windows, episodes, STEPS_S)
    assert point.threshold == (0.35, 0.5, 0.5)
    car = record["groups"]["car"]
    assert car["agents"] == 40 and car["threshold"] == 0.35 and "note" not in car
    rows = {row["threshold"]: row for row in car["curve"]}
    assert rows[0.3]["precision"] == 0.5 and rows[0.35]["precision"] == 1.0 and rows[0.35]["recall"] == 1.0
    assert record["groups"]["pedestrian"]["agents"] == 0 < MIN_AGENTS
    assert "fewer than" in record["groups"]["pedestrian"]["note"]
    assert record["episodes"] == 10 and record["clips"] == 40


def test_a_group_whose_precision_never_holds_keeps_the_default() -> None:
    """The false car outscores the true one: at every threshold precision is at most 0.5."""
    windows, episodes = _episodes(0.95)
    point, record = fit_operating_point(windows, episodes, STEPS_S)
    assert point.threshold[0] == 0.5 and "no threshold reaches precision 0.7" in record["groups"]["car"]["note"]


def test_the_lowest_confident_threshold_is_taken_unless_precision_falls_above_it() -> None:
    def row(threshold: float, precision: float | None, lower: float | None) -> dict:
        return {"threshold": threshold, "precision": precision, "precision_lower": lower}

    rows = [row(0.2, 0.85, 0.75), row(0.3, 0.65, 0.55), row(0.4, 0.8, 0.72), row(0.5, 0.9, 0.8),
            row(0.8, 0.87, 0.68), row(0.85, 1.0, 1.0)]
    # 0.2 passes by chance below 0.3, whose precision falls under 0.7: taken is 0.4. The few detections left
    # at 0.8 widen its bound below 0.7, but their precision holds: that does not push the choice up.
    assert choose_threshold(rows) == 0.4
    # Above every score nothing is reported: no precision to hold or break.
    assert choose_threshold(rows + [row(0.9, None, None)]) == 0.4
    assert choose_threshold([row(0.9, None, None)]) is None
    assert choose_threshold([row(0.4, 0.75, 0.6), row(0.5, 0.8, 0.65)]) is None  # measured, never confident


def test_the_lower_bound_widens_when_episodes_disagree() -> None:
    """Pooled precision 0.75 in both; one set has equal episodes, the other all its errors in a few."""
    even = precision_lower_bound(np.full(20, 3.0), np.full(20, 1.0))
    lumped = precision_lower_bound(np.full(20, 3.0), np.array([5.0] * 4 + [0.0] * 16))
    assert even == pytest.approx(0.75) and lumped < 0.7 < even
    assert precision_lower_bound(np.zeros(3), np.zeros(3)) is None
