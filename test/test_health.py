"""Diagnostics rules: every WARN/ERROR comes with its reason, thresholds come from parameters."""

from __future__ import annotations

import pytest

from qcraft_world_model.ros.health import (ERROR, OK, WARN, HealthThresholds, arrival_rate_hz, camera_health,
                                           inference_health)

LIMITS = HealthThresholds(stale_after_s=0.5, expected_rate_hz=10.0, rate_warn_ratio=0.8, latency_warn_ms=150.0,
                          latency_error_ms=500.0)


def test_arrival_rate() -> None:
    steady = [i * 0.1 for i in range(50)]  # 10 Hz for 5 s
    assert arrival_rate_hz(steady, now=4.95) == pytest.approx(10.0)
    assert arrival_rate_hz(steady[:6], now=0.5) == pytest.approx(10.0)  # started 0.5 s ago: not "slow"
    halved = [i * 0.2 for i in range(25)]
    assert arrival_rate_hz(halved, now=4.85) == pytest.approx(5.0)
    assert arrival_rate_hz([1.0], now=1.0) is None


@pytest.mark.parametrize(("silent", "rate", "errors", "gaps", "level", "words"), [
    (None, None, 0, 0, ERROR, "no frame yet"),
    (2.3, 10.0, 0, 0, ERROR, "stale: no frame for 2.3 s"),
    (0.05, 10.0, 0, 0, OK, "ok"),
    (0.05, 6.0, 0, 0, WARN, "rate 6.0 Hz < 8.0 Hz"),
    (0.05, 10.0, 2, 1, WARN, "2 undecodable frame(s); 1 gap(s)"),
])
def test_camera_health(silent, rate, errors, gaps, level, words) -> None:  # noqa: ANN001
    got_level, message = camera_health(silent, rate, errors, gaps, LIMITS)
    assert got_level == level and words in message


@pytest.mark.parametrize(("p95", "stale", "errors", "level", "words"), [
    (None, [], 0, OK, "ok"),
    (80.0, [], 0, OK, "ok"),
    (200.0, [], 0, WARN, "latency p95 200 ms > 150 ms"),
    (900.0, ["left"], 0, ERROR, "latency p95 900 ms > 500 ms; predicting from held frames of left"),
    (80.0, ["left"], 0, WARN, "predicting from held frames of left"),
    (80.0, [], 3, WARN, "3 failed inference(s)"),
])
def test_inference_health(p95, stale, errors, level, words) -> None:  # noqa: ANN001
    got_level, message = inference_health(p95, stale, errors, LIMITS)
    assert got_level == level and words in message


def test_latency_error_below_warn_is_refused() -> None:
    from qcraft_world_model.ingest import ConfigError
    from qcraft_world_model.ros.parameters import node_values

    with pytest.raises(ConfigError, match="latency_error_ms must not be below"):
        node_values({"diagnostics.latency_warn_ms": 300.0, "diagnostics.latency_error_ms": 200.0})


def test_no_prediction_for_too_long_and_a_camera_held_too_long_are_errors() -> None:
    assert inference_health(None, [], 0, LIMITS, silent_s=1.0) == (OK, "ok")  # a window is still filling
    level, message = inference_health(None, [], 0, LIMITS, silent_s=3.5)
    assert level == ERROR and message == "no prediction for 3.5 s"
    level, message = inference_health(60.0, ["left"], 0, LIMITS, silent_s=6.0, held_too_long="left")
    assert level == ERROR and message.startswith("not predicting: camera left stale longer than the hold limit")
