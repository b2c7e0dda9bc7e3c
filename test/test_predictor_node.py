"""The predictor node as a separate process: camera frames in over DDS, predictions out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qcraft_world_model.data.rosbag_io import read_messages
from qcraft_world_model.data.scene_bag import SceneBagConfig, camera_topic, write_scene_bag

PARAMS = """/**:
  ros__parameters:
    cameras:
      names: [front]
      front:
        topic: {topic}
    model:
      backend: torch
      precision: fp32
"""


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Three seconds of front-camera frames of a simulated drive (rosbags messages)."""
    bag = tmp_path_factory.mktemp("bag") / "drive"
    write_scene_bag(bag, SceneBagConfig(map="braunschweig", seed=3, seconds=3.0))
    return [r.message for r in read_messages(bag, topics=[camera_topic("front")])]


def test_node_predicts_from_a_live_camera_stream(ros, drive: list, tmp_path: Path) -> None:
    rclpy, msgs = ros
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from message_samples import TYPESTORE

    domain = 1 + (os.getpid() + 37) % 100
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.format(topic=camera_topic("front")))
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA",
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    from ament_index_python.packages import get_package_prefix

    # The installed executable, as `ros2 run qcraft_world_model predictor` starts it (not the source tree).
    executable = Path(get_package_prefix("qcraft_world_model")) / "lib" / "qcraft_world_model" / "predictor"
    node = subprocess.Popen([sys.executable, str(executable), "--ros-args", "--params-file", str(params)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        client = rclpy.create_node("camera_and_listener", context=context)
        publisher = client.create_publisher(Image, camera_topic("front"), 10)
        received: list = []
        client.create_subscription(msgs.PredictedAgents, "/predictor/predicted_agents", received.append,
                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        frames: list = []
        client.create_subscription(msgs.PredictedFrames, "/predictor/predicted_frames/front", frames.append,
                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(client)
        # The node subscribes once it is configured (model loaded, warmed up) and active.
        deadline = time.monotonic() + 90
        while publisher.get_subscription_count() == 0:
            assert node.poll() is None, f"node exited: {node.stdout.read()}"
            assert time.monotonic() < deadline, "the node never subscribed to the camera"
            executor.spin_once(timeout_sec=0.1)
        sent = []
        for message in drive:
            image = deserialize_message(bytes(TYPESTORE.serialize_cdr(message, "sensor_msgs/msg/Image")), Image)
            publisher.publish(image)
            sent.append(image.header.stamp.sec * 10**9 + image.header.stamp.nanosec)
            end = time.monotonic() + 0.1  # 10 Hz, spinning meanwhile
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)
        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert len(received) >= 3, "too few predictions for 30 frames"
        for message in received:
            stamp = message.header.stamp.sec * 10**9 + message.header.stamp.nanosec
            assert stamp in sent and stamp >= sent[15], "stamped with the newest frame of a full window"
            assert message.header.frame_id == "base_link" and message.backend == "torch-cpu/fp32"
            assert message.inference_time_ms > 0
        assert frames and len(frames[0].frames) == 5 and frames[0].frames[0].height == 128
    finally:
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
        rclpy.shutdown(context=context)
