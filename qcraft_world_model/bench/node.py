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
#: How the bench's cameras send their frames: raw ``sensor_msgs/Image`` in either channel order, or JPEG
#: ``sensor_msgs/CompressedImage`` (quality 90, as the scene bags write it).
ENCODINGS = ("rgb8", "bgr8", "jpeg")


def camera_names(cameras: int) -> list[str]:
    if not 1 <= cameras <= len(CAMERAS):
        raise ValueError(f"bench node runs 1 to {len(CAMERAS)} cameras, not {cameras}")
    return list(CAMERAS[:cameras])


def camera_topic(name: str) -> str:
    return f"/bench/{name}/image_raw"


def node_model(model: Path | None, cameras: int, work: Path) -> tuple[Path, str]:
    """The model folder the node runs and how the result names it: ``model`` when given, else the
    shipped default model for one camera, else its preset with ``cameras`` cameras and random weights,
    saved in ``work``."""
    if model is not None:
        return model, str(model)
    from qcraft_world_model.runtime.model_folder import DEFAULT_PRESET, default_model

    if cameras == 1:
        return default_model(), "the shipped default model"
    return (random_weight_model(cameras, work / "model"),
            f"{DEFAULT_PRESET}, {cameras} cameras, random weights")


def random_weight_model(cameras: int, folder: Path) -> Path:
    """The default preset with ``cameras`` cameras and random weights (seed 0; latency does not depend on them)."""
    import torch

    from qcraft_world_model.model import WorldModel, WorldModelConfig
    from qcraft_world_model.runtime.model_folder import DEFAULT_PRESET, save_model

    config = WorldModelConfig.from_dict({**WorldModelConfig.preset_config(DEFAULT_PRESET).to_dict(),
                                         "cameras": cameras})
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder, WorldModel(config), config, {"note": "random weights, latency benchmark only"})
    return folder


def predictor_params(names: list[str], model: Path, backend: str, publish_frames: bool,
                     encoding: str = "rgb8", threads: int = 0, frames_rate_hz: float | None = None) -> str:
    """The predictor's parameter file: ``names`` on ``camera_topic`` (JPEG ``encoding``: compressed
    transport), ``model`` on ``backend`` with ``threads`` (0: its default), the image size the model
    folder reads; ``frames_rate_hz``: output.frames_max_rate_hz (None: the node's default)."""
    from qcraft_world_model.runtime.model_folder import read_model_config

    if encoding not in ENCODINGS:
        raise ValueError(f"bench node encodes frames as {', '.join(ENCODINGS)}, not {encoding!r}")
    config = read_model_config(model)
    lines = ["/**:", "  ros__parameters:", "    cameras:", f"      names: [{', '.join(names)}]"]
    for name in names:
        lines += [f"      {name}:", f"        topic: {camera_topic(name)}"]
        if encoding == "jpeg":
            lines.append("        transport: compressed")
    lines += ["    image:", f"      width: {config.width}", f"      height: {config.height}",
              "    model:", f"      path: {json.dumps(str(model))}", f"      backend: {backend}",
              f"      threads: {int(threads)}",
              "    output:", f"      publish_frames: {str(publish_frames).lower()}"]
    if frames_rate_hz is not None:
        lines.append(f"      frames_max_rate_hz: {float(frames_rate_hz)}")
    return "\n".join(lines) + "\n"


def camera_frames(folder: Path, size: tuple[int, int] | None, encoding: str) -> tuple[list[bytes], str]:
    """The drive's front-camera frames as CDR messages of the camera's ``size`` (width, height; None: the
    drive's own) and ``encoding``, and their message type. Frames are rendered at the default model's
    size and scaled up (bilinear) to a real camera's: the bytes on the wire and the node's decode and
    resize work are a real camera's, though the picture holds no more detail."""
    import cv2

    from qcraft_world_model.data.message_types import make_typestore
    from qcraft_world_model.ingest.image_decode import decode_image

    if encoding not in ENCODINGS:
        raise ValueError(f"bench node encodes frames as {', '.join(ENCODINGS)}, not {encoding!r}")
    typestore = make_typestore()
    types = typestore.types
    messages, kind = [], "sensor_msgs/msg/CompressedImage" if encoding == "jpeg" else "sensor_msgs/msg/Image"
    for data in drive_frames(folder):
        image = typestore.deserialize_cdr(data, "sensor_msgs/msg/Image")
        rgb = decode_image(image)
        if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
            rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_LINEAR)
        if encoding == "jpeg":
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise ValueError(f"JPEG encoding failed for a {rgb.shape[1]}x{rgb.shape[0]} frame")
            message = types[kind](header=image.header, format="jpeg", data=jpeg.reshape(-1))
        else:
            pixels = rgb if encoding == "rgb8" else np.ascontiguousarray(rgb[:, :, ::-1])
            message = types[kind](header=image.header, height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                                  is_bigendian=0, step=rgb.shape[1] * 3, data=pixels.reshape(-1))
        messages.append(bytes(typestore.serialize_cdr(message, kind)))
    return messages, kind


def drive_frames(folder: Path) -> list[bytes]:
    """The front-camera ``sensor_msgs/Image`` messages (CDR) of ``DRIVE`` at the default model's frame size,
    written as a scene bag into ``folder``."""
    from qcraft_world_model.data.message_types import make_typestore
    from qcraft_world_model.data.rosbag_io import read_messages
    from qcraft_world_model.data.scene_bag import SceneBagConfig, write_scene_bag
    from qcraft_world_model.data.scene_bag import camera_topic as bag_camera_topic

    from qcraft_world_model.model.config import WorldModelConfig
    from qcraft_world_model.runtime.model_folder import DEFAULT_PRESET

    shipped = WorldModelConfig.preset_config(DEFAULT_PRESET)  # rendered at the default model's own size
    write_scene_bag(folder, SceneBagConfig(**DRIVE, image_size=shipped.width, image_height=shipped.height))
    typestore = make_typestore()
    return [bytes(typestore.serialize_cdr(record.message, "sensor_msgs/msg/Image"))
            for record in read_messages(folder, topics=[bag_camera_topic("front")])]


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{p}": float(np.percentile(values, p)) for p in (50, 95, 99)}


def summary(cameras: int, rate_hz: float, seconds: float, frames_in: int, window: int, e2e_ms: list[float],
            node_ms: list[float], rss_mb: tuple[float, float], backend: str, diagnostics: dict[str, Any],
            model: str, node_log: Path, camera: dict[str, Any] | None = None,
            window_ms: list[float] | None = None, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The benchmark's result: ``frames_in`` frames published per camera, a prediction possible for every
    frame from the ``window``-th on; ``camera``: how the frames were sent (size, encoding, bytes);
    ``window_ms``: the node's model time per window (``~/debug/processing_time_ms``), so the latency
    splits into the model and everything around it; ``settings``: the node parameters the run set."""
    return {"cameras": cameras, "camera": camera or {}, "rate_hz": rate_hz, "seconds": seconds, "frames_in": frames_in,
            "published": len(e2e_ms), "dropped": max(0, frames_in - (window - 1) - len(e2e_ms)),
            "e2e_latency_ms": percentiles(e2e_ms), "node_latency_ms": percentiles(node_ms),
            "node_window_ms": percentiles(window_ms or []),
            "rss_mb": {"start": rss_mb[0], "end": rss_mb[1]}, "backend": backend,
            "node_settings": settings or {},
            "node_diagnostics": diagnostics, "model": model, "node_log": str(node_log)}


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid``, MB (Linux)."""
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS")) / 1024
