"""Node latency and throughput through DDS: `python bench/bench_node.py --cameras 1 --seconds 30`.

Starts the installed predictor as its own process, publishes camera frames (a
simulated drive, repeated) at the given rate from this process, and measures,
for every PredictedAgents that comes back, the time from publishing the frame
it is stamped with to receiving the prediction (end to end, through DDS both
ways), plus the node's own frame-receipt → publish latency
(~/debug/pipeline_latency_ms). Prints JSON (fields documented in docs/node.md, "Measured").
Run after `make build` with `source install/setup.bash`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS")) / 1024


def model_for(cameras: int, folder: Path) -> Path:
    """The shipped lite model for one camera; a random-weight lite with more cameras (latency only)."""
    from qcraft_world_model.runtime.model_folder import default_model

    if cameras == 1:
        return default_model("lite")
    import torch

    from qcraft_world_model.model import WorldModel, WorldModelConfig
    from qcraft_world_model.train.trainer import save_model

    config = WorldModelConfig.from_dict({**WorldModelConfig.preset_config("lite").to_dict(), "cameras": cameras})
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder, WorldModel(config), config, {"note": "random weights, latency benchmark only"})
    return folder


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{p}": float(np.percentile(values, p)) for p in (50, 95, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--no-frames", action="store_true", help="do not publish PredictedFrames")
    parser.add_argument("--depth", type=int, default=10,
                        help="history depth of the camera publishers (1 lost frames in this process: see docs/node.md)")
    parser.add_argument("--stagger-ms", type=float, default=0.0, help="pause between the cameras' publishes")
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64

    from qcraft_world_model.data.message_types import make_typestore
    from qcraft_world_model.data.rosbag_io import read_messages
    from qcraft_world_model.data.scene_bag import SceneBagConfig, camera_topic, write_scene_bag
    from qcraft_world_model.msg import PredictedAgents
    from qcraft_world_model.ros.process import start_predictor

    work = Path(tempfile.mkdtemp(prefix="bench_node_"))
    write_scene_bag(work / "drive", SceneBagConfig(map="braunschweig", seed=3, seconds=5.0))
    typestore = make_typestore()
    base = [deserialize_message(bytes(typestore.serialize_cdr(r.message, "sensor_msgs/msg/Image")), Image)
            for r in read_messages(work / "drive", topics=[camera_topic("front")])]
    names = ["front", "front_left", "front_right"][: args.cameras]
    params = ["/**:", "  ros__parameters:", "    cameras:", f"      names: [{', '.join(names)}]"]
    for name in names:
        params += [f"      {name}:", f"        topic: /bench/{name}/image_raw"]
    params += ["    model:", f"      path: {model_for(args.cameras, work / 'model')}", f"      backend: {args.backend}",
               "    output:", f"      publish_frames: {str(not args.no_frames).lower()}"]
    (work / "params.yaml").write_text("\n".join(params) + "\n")
    domain = 90 + os.getpid() % 9
    node = start_predictor(work / "params.yaml", domain, work, log=work / "node.log")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    client = rclpy.create_node("bench_cameras", context=context)
    publishers = [client.create_publisher(Image, f"/bench/{name}/image_raw", args.depth) for name in names]
    sent: dict[int, float] = {}
    e2e: list[float] = []
    internal: list[float] = []
    client.create_subscription(PredictedAgents, "/predictor/predicted_agents",
                               lambda m: e2e.append((time.monotonic() - sent[m.header.stamp.sec * 10**9
                                                                             + m.header.stamp.nanosec]) * 1e3),
                               QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    client.create_subscription(Float64, "/predictor/debug/pipeline_latency_ms", lambda m: internal.append(m.data),
                               QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    from diagnostic_msgs.msg import DiagnosticArray

    diagnostics: dict[str, dict[str, str]] = {}
    client.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: diagnostics.update({s.name: {kv.key: kv.value for kv in s.values} for s in m.status}),
        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(client)
    deadline = time.monotonic() + 120
    while not all(p.get_subscription_count() for p in publishers):
        if node.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"node did not come up; its log: {work / 'node.log'}")
        executor.spin_once(timeout_sec=0.1)
    rss_start = rss_mb(node.pid)
    period = 1.0 / args.rate
    frames_in = round(args.seconds * args.rate)
    start = time.monotonic()
    for index in range(frames_in):
        image = base[index % len(base)]
        stamp_ns = 1_800_000_000 * 10**9 + round(index * period * 1e9)
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        sent[stamp_ns] = time.monotonic()
        for publisher in publishers:
            publisher.publish(image)
            if args.stagger_ms:
                time.sleep(args.stagger_ms / 1e3)
        while time.monotonic() < start + (index + 1) * period:
            executor.spin_once(timeout_sec=0.005)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.02)
    rss_end = rss_mb(node.pid)
    node.terminate()
    node.wait(timeout=10)
    full_windows = frames_in - 15
    print(json.dumps({"cameras": args.cameras, "rate_hz": args.rate, "seconds": args.seconds, "frames_in": frames_in,
                      "published": len(e2e), "dropped": max(0, full_windows - len(e2e)),
                      "e2e_latency_ms": percentiles(e2e), "node_latency_ms": percentiles(internal),
                      "rss_mb": {"start": rss_start, "end": rss_end}, "backend": args.backend,
                      "node_diagnostics": diagnostics,
                      "model": "shipped lite" if args.cameras == 1 else "lite, 3 cameras, random weights",
                      "node_log": str(work / "node.log")}, indent=2))
    rclpy.shutdown(context=context)


if __name__ == "__main__":
    main()
