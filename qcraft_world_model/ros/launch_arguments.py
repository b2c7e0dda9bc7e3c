"""What ``launch/predict.launch.py``'s arguments change: only what the user gave, on top of the
parameter file.

The launch file once passed ``model.path/backend/precision`` after the parameter file whether
given or not, so a file saying ``backend: torch, precision: fp32`` silently ran ``auto``/bf16.
Empty arguments now mean "not given". Kept free of ``launch`` (not installable everywhere this
package is tested) so the rules are unit-tested; the launch file only calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qcraft_world_model.ingest.config import ConfigError, load_parameters

#: Launch argument → the node parameter it sets (when given).
SIMPLE_ARGUMENTS = {"model_path": "model.path", "backend": "model.backend", "precision": "model.precision"}
#: Every argument that may override a parameter, with its help text.
ARGUMENTS = {
    "model_path": "model folder (model.safetensors + config.json); empty: the parameter file's",
    "backend": "auto, torch, onnxruntime or tensorrt; empty: the parameter file's",
    "precision": "fp32, bf16, fp16 or mixed-int8; empty: the parameter file's",
    "camera_names": "comma-separated camera names (cameras.names); empty: the parameter file's",
    "camera_topics": "comma-separated image topics, one per camera name; empty: the parameter file's",
}


def dds_environment(profile: str, discovery_range: str) -> dict[str, str]:
    """The node's DDS environment: with a Fast DDS ``profile`` (default: the package's loopback one,
    every socket on 127.0.0.1, images over shared memory) discovery is the profile's
    (SYSTEM_DEFAULT: with LOCALHOST rmw_fastrtps would add a UDP transport on every interface);
    with ``profile`` empty, Fast DDS's defaults, the large-data transport and ``discovery_range``."""
    if profile.strip():
        from qcraft_world_model.ros.process import loopback_dds_env

        return loopback_dds_env(base={}, profile=profile)  # the one definition of loopback DDS
    return {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA", "ROS_AUTOMATIC_DISCOVERY_RANGE": discovery_range}


def parameter_overrides(given: Mapping[str, str], params_file: str | Path) -> dict[str, Any]:
    """The node parameters the given (non-empty) launch arguments set, to pass after the file.

    ``camera_topics`` pairs with ``camera_names``, or with the file's ``cameras.names`` when no
    names are given. Raises ConfigError for a mismatch (the launch fails with that message).
    """
    values = {name: str(value).strip() for name, value in given.items() if str(value).strip()}
    overrides: dict[str, Any] = {SIMPLE_ARGUMENTS[k]: v for k, v in values.items() if k in SIMPLE_ARGUMENTS}
    names = [n.strip() for n in values.get("camera_names", "").split(",") if n.strip()]
    if names:
        overrides["cameras.names"] = names
    if "camera_topics" in values:
        topics = [t.strip() for t in values["camera_topics"].split(",") if t.strip()]
        if not names:
            names = list(load_parameters(params_file).get("cameras.names", ["front"]))
        if len(topics) != len(names):
            raise ConfigError(f"camera_topics gives {len(topics)} topic(s) for {len(names)} camera(s) "
                              f"({', '.join(names)})")
        overrides.update({f"cameras.{name}.topic": topic for name, topic in zip(names, topics)})
    return overrides
