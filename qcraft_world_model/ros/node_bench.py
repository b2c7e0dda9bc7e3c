"""The DDS side of ``qcraft-wm bench node`` (bench/node.py): start the predictor, publish the cameras at a
fixed rate, and time what comes back."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from qcraft_world_model.bench.node import camera_frames, camera_names, camera_topic, predictor_params, rss_mb, summary
from qcraft_world_model.msg import Float64Stamped, PredictedAgents
from qcraft_world_model.ros.process import start_predictor, stop
from qcraft_world_model.runtime.model_folder import read_model_config

#: First stamp published: far from any real clock, so no other stream is mistaken for the bench's.
FIRST_STAMP_NS = 1_800_000_000 * 10**9


def _ns(stamp) -> int:  # noqa: ANN001 - builtin_interfaces/Time
    return stamp.sec * 10**9 + stamp.nanosec


def bench_node(model: Path, model_note: str, cameras: int = 1, rate: float = 10.0, seconds: float = 30.0,
               backend: str = "auto", publish_frames: bool = True, depth: int = 10, stagger_ms: float = 0.0,
               work: Path | None = None, progress: Callable[[int, int], None] | None = None,
               size: tuple[int, int] | None = None, encoding: str = "rgb8", threads: int = 0,
               frames_rate_hz: float | None = None) -> dict[str, Any]:
    """Run the predictor on ``model`` (its camera count must be ``cameras``) for ``seconds`` of frames at
    ``rate`` Hz on every camera, each frame ``size`` (width, height; None: the model's) in ``encoding``
    (bench/node.py's ENCODINGS); the result of bench/node.py's ``summary``. ``work`` (default: a new
    temporary folder) keeps the drive, the parameters and the node's log. ``progress(done, total)``:
    frames published."""
    names = camera_names(cameras)
    work = Path(tempfile.mkdtemp(prefix="bench_node_")) if work is None else work
    config = read_model_config(model)
    size = (config.width, config.height) if size is None else tuple(size)
    frames, kind = camera_frames(work / "drive", size, encoding)
    message_type = CompressedImage if kind.endswith("CompressedImage") else Image
    base = [deserialize_message(data, message_type) for data in frames]
    camera = {"width": size[0], "height": size[1], "encoding": encoding,
              "bytes_per_frame": round(sum(map(len, frames)) / len(frames))}
    node_settings = {"threads": threads, "frames_max_rate_hz": frames_rate_hz}
    (work / "params.yaml").write_text(predictor_params(names, model, backend, publish_frames, encoding, threads,
                                                       frames_rate_hz))
    domain = 90 + os.getpid() % 9
    node = start_predictor(work / "params.yaml", domain, work, log=work / "node.log")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        client = rclpy.create_node("bench_cameras", context=context)
        publishers = [client.create_publisher(message_type, camera_topic(name), depth) for name in names]
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        sent: dict[int, float] = {}
        e2e: list[float] = []
        internal: list[float] = []
        model_ms: list[float] = []
        diagnostics: dict[str, dict[str, str]] = {}

        def prediction(message: PredictedAgents) -> None:
            e2e.append((time.monotonic() - sent[_ns(message.header.stamp)]) * 1e3)

        def node_latency(message: Float64Stamped) -> None:
            if _ns(message.stamp) in sent:  # stamped like the prediction it measures: the bench's windows only
                internal.append(message.data)

        client.create_subscription(PredictedAgents, "/predictor/predicted_agents", prediction, reliable)
        client.create_subscription(Float64Stamped, "/predictor/debug/pipeline_latency_ms", node_latency, reliable)
        client.create_subscription(
            Float64Stamped, "/predictor/debug/processing_time_ms",
            lambda m: model_ms.append(m.data) if _ns(m.stamp) in sent else None, reliable)
        client.create_subscription(
            DiagnosticArray, "/diagnostics",
            lambda m: diagnostics.update({s.name: {kv.key: kv.value for kv in s.values} for s in m.status}), reliable)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(client)
        deadline = time.monotonic() + 120
        while not all(p.get_subscription_count() for p in publishers):
            if node.poll() is not None or time.monotonic() > deadline:
                raise TimeoutError(f"the predictor did not come up; its log: {work / 'node.log'}")
            executor.spin_once(timeout_sec=0.1)
        rss_start = rss_mb(node.pid)
        period = 1.0 / rate
        frames_in = round(seconds * rate)
        if progress is not None:
            progress(0, frames_in)
        start = time.monotonic()
        for index in range(frames_in):
            image = base[index % len(base)]
            stamp_ns = FIRST_STAMP_NS + round(index * period * 1e9)
            image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ns, 10**9)
            sent[stamp_ns] = time.monotonic()
            for publisher in publishers:
                publisher.publish(image)
                if stagger_ms:
                    time.sleep(stagger_ms / 1e3)
            while time.monotonic() < start + (index + 1) * period:
                executor.spin_once(timeout_sec=0.005)
            if progress is not None:
                progress(index + 1, frames_in)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
        rss_end = rss_mb(node.pid)
    finally:
        stop(node)
        rclpy.shutdown(context=context)
    return summary(cameras, rate, seconds, frames_in, config.window, e2e, internal, (rss_start, rss_end), backend,
                   diagnostics, model_note, work / "node.log", camera, model_ms, node_settings)
