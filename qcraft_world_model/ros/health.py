"""Health of the cameras and of inference, as diagnostics levels with a reason.

Plain Python (no rclpy), so the rules are unit-tested; the node turns the
results into ``diagnostic_msgs/DiagnosticStatus``. Levels are DiagnosticStatus's:
0 OK, 1 WARN, 2 ERROR. Every WARN/ERROR says why, since that message is what
an operator sees in rqt_robot_monitor or Foxglove.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class HealthThresholds:
    """The limits, from the node's parameters."""

    stale_after_s: float  # alignment.stale_after_s: silent this long → ERROR
    expected_rate_hz: float  # window.rate_hz
    rate_warn_ratio: float  # diagnostics.rate_warn_ratio: below this share of the expected rate → WARN
    latency_warn_ms: float  # diagnostics.latency_warn_ms: p95 frame receipt → publish above this → WARN
    latency_error_ms: float  # diagnostics.latency_error_ms: ... above this → ERROR
    #: No prediction for this long → ERROR (stale_after_s plus the time a window takes to fill,
    #: so the first fill after activation is not an error).
    no_prediction_after_s: float = 2.0


def arrival_rate_hz(arrivals: Sequence[float], now: float, span_s: float = 2.0) -> float | None:
    """Frames per second over the last ``span_s`` of monotonic arrival times (oldest first; keep at
    least ``span_s`` worth). A camera sending for less than ``span_s`` is measured over its own
    lifetime, so a camera that just started is not reported slow. None below two frames."""
    if len(arrivals) < 2:
        return None
    if arrivals[0] > now - span_s:
        return (len(arrivals) - 1) / max(now - arrivals[0], 1e-9)
    return sum(1 for t in arrivals if t > now - span_s) / span_s


def camera_health(silent_s: float | None, rate_hz: float | None, decode_errors: int, gaps: int,
                  limits: HealthThresholds) -> tuple[int, str]:
    """(level, message) of one camera; counters are totals since configure."""
    if silent_s is None:
        return ERROR, "no frame yet"
    if silent_s > limits.stale_after_s:
        # An error even though predictions go on: they read this camera's held window
        # (PredictedAgents.stale_cameras), or wait for it if it never filled one.
        return ERROR, f"stale: no frame for {silent_s:.1f} s"
    reasons = []
    if rate_hz is not None and rate_hz < limits.rate_warn_ratio * limits.expected_rate_hz:
        reasons.append(f"rate {rate_hz:.1f} Hz < {limits.rate_warn_ratio * limits.expected_rate_hz:.1f} Hz")
    if decode_errors:
        reasons.append(f"{decode_errors} undecodable frame(s)")
    if gaps:
        reasons.append(f"{gaps} gap(s) in the stream")
    return (WARN, "; ".join(reasons)) if reasons else (OK, "ok")


def inference_health(latency_p95_ms: float | None, stale_cameras: Sequence[str], errors: int,
                     limits: HealthThresholds, silent_s: float = 0.0, held_too_long: str | None = None,
                     non_finite: int = 0) -> tuple[int, str]:
    """(level, message) of the inference worker; ``silent_s``: seconds since the last prediction (or
    activation); ``held_too_long``: a camera stale beyond alignment.max_hold_s, which stops predictions;
    ``non_finite``: windows dropped because the model's output was not finite (a broken model: ERROR)."""
    level, reasons = OK, []
    if held_too_long:
        level = ERROR
        reasons.append(f"not predicting: camera {held_too_long} stale longer than the hold limit")
    elif silent_s > limits.no_prediction_after_s:
        level = ERROR
        reasons.append(f"no prediction for {silent_s:.1f} s")
    if non_finite:
        level = ERROR
        reasons.append(f"{non_finite} window(s) with non-finite model output dropped")
    if latency_p95_ms is not None and latency_p95_ms > limits.latency_error_ms:
        level = ERROR
        reasons.append(f"latency p95 {latency_p95_ms:.0f} ms > {limits.latency_error_ms:g} ms")
    elif latency_p95_ms is not None and latency_p95_ms > limits.latency_warn_ms:
        level = max(level, WARN)
        reasons.append(f"latency p95 {latency_p95_ms:.0f} ms > {limits.latency_warn_ms:g} ms")
    if stale_cameras:
        level = max(level, WARN)
        reasons.append(f"predicting from held frames of {', '.join(stale_cameras)}")
    if errors:
        level = max(level, WARN)
        reasons.append(f"{errors} failed inference(s)")
    return level, "; ".join(reasons) if reasons else "ok"
