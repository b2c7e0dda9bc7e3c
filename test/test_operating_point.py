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


def test_an_operating_point_holds_a_threshold_per_group_within_and_beyond_its_radius() -> None:
    assert OperatingPoint() == OperatingPoint.uniform(0.5) == OperatingPoint((0.5,) * 3, (0.5,) * 3)
    point = OperatingPoint((0.35, 0.6, 0.5), (0.5, 0.8, 0.5))  # radii: cars 30 m, pedestrians 20 m
    scores = np.array([0.4, 0.4, 0.7, 0.3, 0.45, 0.7])
    labels = np.array([CAR, PEDESTRIAN, PEDESTRIAN, 2, CAR, PEDESTRIAN])
    where = np.array([[10, 0], [10, 0], [15, 5], [10, -3], [31, 0], [0, 25]])
    # a truck (2) is a car: 0.3 < 0.35; a car at 31 m needs 0.5; a pedestrian at 25 m needs 0.8
    assert point.reported(scores, labels, where).tolist() == [True, False, True, False, False, False]
    assert point.lowest() == 0.35 and OperatingPoint.from_dict(point.as_dict()) == point
    assert point.as_dict()["pedestrian"] == {"within_m": 20.0, "threshold": 0.6, "beyond": 0.8}
    assert point.describe().startswith("car 0.35 within 30 m, 0.5 beyond, pedestrian 0.6 within 20 m, 0.8 beyond, ")
    assert OperatingPoint.uniform(0.4).describe() == "car 0.4, pedestrian 0.4, bicycle 0.4"
    for bad in ((0.5, 0.5), (0.5, 0.5, 1.5), (0.5, float("nan"), 0.5), (True, 0.5, 0.5)):
        with pytest.raises(ValueError, match="3 score thresholds in 0..1"):
            OperatingPoint(bad)
    with pytest.raises(ValueError, match="beyond it"):
        OperatingPoint((0.5,) * 3, (0.5, 2.0, 0.5))


def test_evaluation_reports_each_group_at_its_own_threshold() -> None:
    """A weak car (0.3) counts under a car threshold of 0.25; a pedestrian at 0.4 does not under 0.5; a weak
    car at 40 m does not under 0.5 beyond 30 m."""
    w = window([[10, 0], [20, 3], [8, 2], [40, 0]], [[10, 0], [20, 3], [8, 2], [40, 0]], scores=[0.9, 0.3, 0.4, 0.3],
               labels=[CAR, CAR, PEDESTRIAN, CAR], pred_labels=[CAR, CAR, PEDESTRIAN, CAR])
    fixed = score_windows([w], 0.5, STEPS_S, 3)
    own = score_windows([w], OperatingPoint((0.25, 0.5, 0.5), (0.5, 0.5, 0.5)), STEPS_S, 3)
    assert fixed["targets"]["car_30m"]["let_recall"] == 0.5 and own["targets"]["car_30m"]["let_recall"] == 1.0
    assert own["by_class"]["car"]["by_range"]["30-50"]["recall_2m"] == 0.0
    assert own["targets"]["pedestrian_20m"]["recall_2m"] == 0.0
    assert own["threshold"]["car"] == {"within_m": 30.0, "threshold": 0.25, "beyond": 0.5}
    assert fixed["threshold"] == 0.5
    # The sweep is the same curve whatever the operating point.
    assert own["targets_by_threshold"] == fixed["targets_by_threshold"]


def _episodes(false_score: float, count: int = 40, per_episode: int = 4) -> tuple[list, list[str]]:
    """``count`` windows, each a car at 10 m found at 0.8 and a false car at ``false_score`` 5 m beside."""
    windows = [window([[10, 0]], [[10, 0], [10, 5]], scores=[0.8, false_score], labels=[CAR],
                      pred_labels=[CAR, CAR]) for _ in range(count)]
    return windows, [f"episode{i // per_episode}" for i in range(count)]


def test_the_lowest_threshold_that_keeps_precision_is_chosen_per_range_band() -> None:
    """Every window: a true car at 10 m found at 0.8 and a false one at 0.3; a true car at 40 m found at 0.8
    and a false one there at 0.6. Near, precision is 0.5 up to 0.3 and 1 above: the first grid point above
    0.3. Far, the same above 0.6. No pedestrian or bicycle: they keep 0.5."""
    windows = [window([[10, 0], [40, 0]], [[10, 0], [10, 5], [40, 0], [40, 6]], scores=[0.8, 0.3, 0.8, 0.6],
                      labels=[CAR, CAR], pred_labels=[CAR] * 4) for _ in range(40)]
    episodes = [f"episode{i // 4}" for i in range(40)]
    point, record = fit_operating_point(windows, episodes, STEPS_S)
    assert point.threshold == (0.35, 0.5, 0.5) and point.beyond == (0.65, 0.5, 0.5)
    near, far = record["groups"]["car"]["within"], record["groups"]["car"]["beyond"]
    assert near["agents"] == far["agents"] == 40 and near["band_m"] == [0.0, 30.0] and far["band_m"] == [30.0, 50.0]
    assert "note" not in near and "note" not in far
    rows = {row["threshold"]: row for row in near["curve"]}
    assert rows[0.3]["precision"] == 0.5 and rows[0.35]["precision"] == 1.0 and rows[0.35]["recall"] == 1.0
    assert record["groups"]["pedestrian"]["within"]["agents"] == 0 < MIN_AGENTS
    assert "fewer than" in record["groups"]["pedestrian"]["within"]["note"]
    assert record["episodes"] == 10 and record["clips"] == 40
    # A group left out keeps the default in both bands; what the rule would have chosen is recorded.
    point, record = fit_operating_point(windows, episodes, STEPS_S, groups=("bicycle",))
    assert point == OperatingPoint()
    assert record["groups"]["car"]["within"]["chosen"] == 0.35 and "left out" in record["groups"]["car"]["within"]["note"]
    with pytest.raises(ValueError, match="no class group truck"):
        fit_operating_point(windows, episodes, STEPS_S, groups=("truck",))


def test_a_group_whose_precision_never_holds_keeps_the_default() -> None:
    """The false car outscores the true one: at every threshold precision is at most 0.5."""
    windows, episodes = _episodes(0.95)
    point, record = fit_operating_point(windows, episodes, STEPS_S)
    assert point.threshold[0] == 0.5
    assert "no threshold reaches precision 0.7" in record["groups"]["car"]["within"]["note"]


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
