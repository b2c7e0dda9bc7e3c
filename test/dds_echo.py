"""Test helper process: re-publishes every message it receives on /qwm_test/in/<Name>
to /qwm_test/out/<Name>, for the given message types, until killed.

Run as ``python dds_echo.py pkg/msg/Name ...`` with ROS_DOMAIN_ID set by the test.
"""

from __future__ import annotations

import importlib
import sys

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy


def message_class(typename: str) -> type:
    package, _, name = typename.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def main(typenames: list[str]) -> None:
    rclpy.init()
    node = Node("qwm_dds_echo")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    keep = []
    for typename in typenames:
        cls = message_class(typename)
        name = typename.rsplit("/", 1)[-1]
        publisher = node.create_publisher(cls, f"/qwm_test/out/{name}", qos)
        keep.append(node.create_subscription(cls, f"/qwm_test/in/{name}", publisher.publish, qos))
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
