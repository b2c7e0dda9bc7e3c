"""Every package message (and a 720p camera image) round-trips between two
processes over DDS: published here, echoed by a second process, received back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from message_samples import TYPESTORE, as_plain, cdr, samples

ECHO = Path(__file__).with_name("dds_echo.py")
IMAGE = "sensor_msgs/msg/Image"


def camera_image() -> object:
    """A 1280x720 rgb8 frame: large enough to need Fast DDS's large-data transport."""
    pixels = np.random.default_rng(3).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    header = TYPESTORE.types["std_msgs/msg/Header"](
        stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](sec=5, nanosec=6), frame_id="cam")
    return TYPESTORE.types[IMAGE](header=header, height=720, width=1280, encoding="rgb8",
                                  is_bigendian=0, step=1280 * 3, data=pixels.reshape(-1))


@pytest.fixture
def domain_id() -> int:
    """A DDS domain of this test run's own, so parallel runs do not hear each other."""
    return 1 + os.getpid() % 100


def test_every_message_round_trips_between_two_processes(ros, domain_id: int) -> None:
    rclpy, _ = ros
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message

    originals = {**samples(), IMAGE: camera_image()}
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id),
           "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    os.environ.update({k: env[k] for k in ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    echo = subprocess.Popen([sys.executable, str(ECHO), *originals], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        from dds_echo import message_class

        node = rclpy.create_node("qwm_dds_test", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        received: dict[str, object] = {}
        publishers, subscriptions = {}, []
        for typename in originals:
            cls = message_class(typename)
            name = typename.rsplit("/", 1)[-1]
            publishers[typename] = node.create_publisher(cls, f"/qwm_test/in/{name}", qos)
            subscriptions.append(node.create_subscription(
                cls, f"/qwm_test/out/{name}",
                lambda msg, typename=typename: received.setdefault(typename, msg), qos))
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)

        # Wait for matched endpoints both ways, not a fixed sleep.
        deadline = time.monotonic() + 30
        while not all(p.get_subscription_count() >= 1 for p in publishers.values()) or \
                not all(s.get_publisher_count() >= 1 for s in subscriptions):
            assert echo.poll() is None, f"echo process died: {echo.stderr.read()}"
            assert time.monotonic() < deadline, "DDS endpoints did not match within 30 s"
            executor.spin_once(timeout_sec=0.05)

        # Matching is seen by each side on its own: our publisher can match the echo's subscription
        # before that subscription has matched our publisher, and a sample sent then is not delivered
        # (seen once under a loaded machine). So each message not yet echoed is sent again every
        # half second; the echo of the first that arrives is the one compared.
        deadline, last_sent = time.monotonic() + 30, 0.0
        while len(received) < len(originals) and time.monotonic() < deadline:
            if time.monotonic() - last_sent > 0.5:
                for typename, message in originals.items():
                    if typename not in received:
                        publishers[typename].publish(deserialize_message(cdr(typename, message),
                                                                         message_class(typename)))
                last_sent = time.monotonic()
            executor.spin_once(timeout_sec=0.05)

        assert set(received) == set(originals), f"missing echoes: {set(originals) - set(received)}"
        for typename, message in originals.items():
            echoed = TYPESTORE.deserialize_cdr(serialize_message(received[typename]), typename)
            assert as_plain(echoed) == as_plain(message), typename
    finally:
        echo.terminate()
        try:
            echo.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a loaded machine can miss SIGTERM's grace: not the test's subject
            echo.kill()
            echo.wait()
        rclpy.shutdown(context=context)
