"""The predictor node's own parameters (besides the camera ingest ones in ``ingest/config.py``).

Kept free of rclpy, like the ingest schema, so documentation and checks can
read it anywhere; the node declares and validates from it at configure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcraft_world_model.ingest.config import ConfigError, ParamSpec, checked, spec_table_markdown

#: Every node parameter that is not a camera ingest parameter.
NODE_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", bool, True,
              "Configure and activate on start instead of waiting for a lifecycle manager"),
    ParamSpec("model.path", str, "", "Model folder (model.safetensors + config.json); empty: the shipped default model (models/lite-wide)"),
    ParamSpec("model.backend", str, "auto", "Inference backend; auto picks the fastest available and logs why",
              choices=("auto", "torch", "onnxruntime", "openvino", "tensorrt")),
    ParamSpec("model.precision", str, "", "Precision plan; empty: the backend's choice",
              choices=("", "fp32", "bf16", "fp16", "mixed-int8")),
    ParamSpec("model.threads", int, 0,
              "CPU threads of a prediction (onnxruntime/OpenVINO intra-op, torch's pool); 0: the backend's "
              "default, one per core", "", 0, 256),
    ParamSpec("alignment.max_hold_s", float, 5.0,
              "A stale camera's last window is read again for at most this long, then predictions stop "
              "(ERROR); 0: no limit", "s", 0.0, 3600.0),
    ParamSpec("ego_motion.odometry_topic", str, "",
              "nav_msgs/Odometry with the ego's velocity (twist in base_link), e.g. Autoware's "
              "/localization/kinematic_state; empty: the model's own estimate from the images"),
    ParamSpec("ego_motion.max_age_s", float, 0.3,
              "Odometry further than this from a window's capture time is not used: the model's estimate is",
              "s", 0.0, 10.0),
    ParamSpec("output.frame_id", str, "base_link", "Frame of PredictedAgents (the ego frame)"),
    ParamSpec("tf.static_mounts", bool, True,
              "Place each camera at its optical frame's pose in output.frame_id from /tf_static (chains "
              "composed); until that arrives, and when false, cameras.<name>.mount.*"),
    ParamSpec("output.existence_threshold", float, 0.5,
              "Agents less likely than this are not published (where output.model_operating_point does not apply)",
              "probability", 0.0, 1.0),
    ParamSpec("output.model_operating_point", bool, True,
              "Publish each class group's agents from the model folder's operating point (operating_point.json, "
              "chosen on validation clips for precision 0.7); false, or a folder without one: "
              "output.existence_threshold"),
    ParamSpec("output.max_age_s", float, 1.0,
              "A window whose newest frame arrived longer ago than this is dropped, not predicted "
              "(after a pause or a stall)", "s", 0.05, 60.0),
    ParamSpec("output.publish_frames", bool, True, "Publish PredictedFrames per camera on ~/predicted_frames/<camera>"),
    ParamSpec("output.frames_max_rate_hz", float, 10.0,
              "Publish PredictedFrames at most this often (they are large); 0: with every prediction", "Hz",
              0.0, 1000.0),
    ParamSpec("diagnostics.rate_warn_ratio", float, 0.8,
              "A camera arriving slower than this share of window.rate_hz is reported WARN", "", 0.0, 1.0),
    ParamSpec("diagnostics.latency_warn_ms", float, 150.0,
              "Inference is reported WARN when p95 frame receipt → publish exceeds this", "ms", 1.0, 60000.0),
    ParamSpec("diagnostics.latency_error_ms", float, 500.0,
              "... and ERROR when it exceeds this", "ms", 1.0, 60000.0),
)


def node_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The node parameters from ``values`` (defaults where absent), type- and range-checked (ConfigError)."""
    checked_values = {spec.name: checked(spec, values.get(spec.name, spec.default), spec.name)
                      for spec in NODE_PARAMETERS}
    if checked_values["diagnostics.latency_error_ms"] < checked_values["diagnostics.latency_warn_ms"]:
        raise ConfigError("parameter diagnostics.latency_error_ms must not be below diagnostics.latency_warn_ms")
    return checked_values


def node_parameter_table_markdown() -> str:
    """The README's table of the node's own parameters (a test keeps it equal to the schema)."""
    return spec_table_markdown(NODE_PARAMETERS)
