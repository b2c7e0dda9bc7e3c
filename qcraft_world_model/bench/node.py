"""``qcraft-wm bench node``: the predictor's latency and throughput through DDS, the node as its own process.

Starts the installed predictor (``make build``; ``source install/setup.bash``), publishes camera
frames (a simulated drive, repeated) at the given rate, and measures for every PredictedAgents that
comes back the time from publishing the frame it is stamped with to receiving the prediction (end
to end, through DDS both ways), plus the node's own frame-receipt → publish latency
(``~/debug/pipeline_latency_ms``). The fields of the result are explained in docs/node.md, "Measured".

This module holds the set-up (which model, the parameters, the frames) and the arithmetic; the DDS side (publishing the cameras, listening to
the node) is ``ros/node_bench.py``, since rclpy is imported under ``ros/`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: Camera names, in rig order, for 1 to 3 cameras.
CAMERAS = ("front", "front_left", "front_right")
#: The drive whose front-camera frames are published (repeated) on every camera.
DRIVE = {"map": "braunschweig", "seed": 3, "seconds": 5.0}


def camera_names(cameras: int) -> list[str]:
    if not 1 <= cameras <= len(CAMERAS):
        raise ValueError(f"bench node runs 1 to {len(CAMERAS)} cameras, not {cameras}")
    return list(CAMERAS[:cameras])


def camera_topic(name: str) -> str:
    return f"/bench/{name}/image_raw"


def node_model(model: Path | None, cameras: int, work: Path) -> tuple[Path, str]:
    """The model folder the node runs and how the result names it: ``model`` when given, else the
    shipped lite for one camera, else lite with ``cameras`` cameras and random weights, saved in ``work``."""
    if model is not None:
        return model, str(model)
    from qcraft_world_model.runtime.model_folder import default_model

    if cameras == 1:
        return default_model(), "the shipped default model"
    return random_weight_lite(cameras, work / "model"), f"lite, {cameras} cameras, random weights"


def random_weight_lite(cameras: int, folder: Path) -> Path:
    """The lite preset with ``cameras`` cameras and random weights (seed 0; latency does not depend on them)."""
    import torch

    from qcraft_world_model.model import WorldModel, WorldModelConfig
    from qcraft_world_model.runtime.model_folder import save_model

    config = WorldModelConfig.from_dict({**WorldModelConfig.preset_config("lite").to_dict(), "cameras": cameras})
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder, WorldModel(config), config, {"note": "random weights, latency benchmark only"})
    return folder


def predictor_params(names: list[str], model: Path, backend: str, publish_frames: bool) -> str:
    """The predictor's parameter file: ``names`` on ``camera_topic``, ``model`` on ``backend``."""
    lines = ["/**:", "  ros__parameters:", "    cameras:", f"      names: [{', '.join(names)}]"]
    for name in names:
        lines += [f"      {name}:", f"        topic: {camera_topic(name)}"]
    lines += ["    model:", f"      path: {json.dumps(str(model))}", f"      backend: {backend}",
              "    output:", f"      publish_frames: {str(publish_frames).lower()}"]
    return "\n".join(lines) + "\n"


def drive_frames(folder: Path) -> list[bytes]:
    """The front-camera ``sensor_msgs/Image`` messages (CDR) of ``DRIVE``, written as a scene bag into ``folder``."""
    from qcraft_world_model.data.message_types import make_typestore
    from qcraft_world_model.data.rosbag_io import read_messages
    from qcraft_world_model.data.scene_bag import SceneBagConfig, write_scene_bag
    from qcraft_world_model.data.scene_bag import camera_topic as bag_camera_topic

    write_scene_bag(folder, SceneBagConfig(**DRIVE))
    typestore = make_typestore()
    return [bytes(typestore.serialize_cdr(record.message, "sensor_msgs/msg/Image"))
            for record in read_messages(folder, topics=[bag_camera_topic("front")])]


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{p}": float(np.percentile(values, p)) for p in (50, 95, 99)}


def summary(cameras: int, rate_hz: float, seconds: float, frames_in: int, window: int, e2e_ms: list[float],
            node_ms: list[float], rss_mb: tuple[float, float], backend: str, diagnostics: dict[str, Any],
            model: str, node_log: Path) -> dict[str, Any]:
    """The benchmark's result: ``frames_in`` frames published per camera, a prediction possible for every
    frame from the ``window``-th on."""
    return {"cameras": cameras, "rate_hz": rate_hz, "seconds": seconds, "frames_in": frames_in,
            "published": len(e2e_ms), "dropped": max(0, frames_in - (window - 1) - len(e2e_ms)),
            "e2e_latency_ms": percentiles(e2e_ms), "node_latency_ms": percentiles(node_ms),
            "rss_mb": {"start": rss_mb[0], "end": rss_mb[1]}, "backend": backend,
            "node_diagnostics": diagnostics, "model": model, "node_log": str(node_log)}


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid``, MB (Linux)."""
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS")) / 1024
