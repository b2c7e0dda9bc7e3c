"""One filled-in instance of each of the package's messages, built with rosbags.

Every field gets a non-default value (float32 fields exactly representable), so a round trip that drops or garbles any
field shows up as a byte difference. Built from the rosbags typestore (no ROS
needed); tests that need rclpy messages convert through CDR bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qcraft_world_model.data.message_types import make_typestore, msgtype

TYPESTORE = make_typestore()


def _t(name: str) -> Any:
    return TYPESTORE.types[name]


def _header(sec: int, frame_id: str) -> Any:
    return _t("std_msgs/msg/Header")(
        stamp=_t("builtin_interfaces/msg/Time")(sec=sec, nanosec=123_456_789), frame_id=frame_id)


def _pose(x: float, y: float, yaw: float) -> Any:
    return _t("geometry_msgs/msg/Pose")(
        position=_t("geometry_msgs/msg/Point")(x=x, y=y, z=0.25),
        orientation=_t("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=float(np.sin(yaw / 2)),
                                                       w=float(np.cos(yaw / 2))))


def _vec(x: float, y: float, z: float) -> Any:
    return _t("geometry_msgs/msg/Vector3")(x=x, y=y, z=z)


def agent_path(k: int) -> Any:
    return _t(msgtype("AgentPath"))(
        confidence=0.5 / 2**k, poses=[_pose(1.0 + i + k, 0.1 * i, 0.01 * i) for i in range(6)])


def agent_trajectory(object_id: int, with_paths: bool = True) -> Any:
    cls = _t(msgtype("AgentTrajectory"))
    return cls(
        object_id=object_id,
        label=cls.PEDESTRIAN if object_id % 2 else cls.TRUCK,
        label_probability=0.875,
        existence_probability=0.9375 if with_paths else 1.0,
        pose=_pose(12.5, -3.25, 0.3),
        dimensions=_vec(4.5, 1.9, 1.6),
        twist=_t("geometry_msgs/msg/Twist")(linear=_vec(8.0, 0.5, 0.0), angular=_vec(0.0, 0.0, 0.1)),
        pose_covariance=np.arange(36, dtype=np.float64) / 8, twist_covariance=np.full(36, 0.25),
        time_step=_t("builtin_interfaces/msg/Duration")(sec=0, nanosec=500_000_000),
        paths=[agent_path(k) for k in range(3)] if with_paths else [],
    )


def image(seed: int, height: int = 48, width: int = 64) -> Any:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return _t("sensor_msgs/msg/Image")(
        header=_header(100 + seed, "camera_front_optical"), height=height, width=width,
        encoding="rgb8", is_bigendian=0, step=width * 3, data=pixels.reshape(-1))


def samples() -> dict[str, Any]:
    """Type name → filled instance, for every message in msg/."""
    return {
        msgtype("AgentPath"): agent_path(0),
        msgtype("AgentTrajectory"): agent_trajectory(7),
        msgtype("PredictedAgents"): _t(msgtype("PredictedAgents"))(
            header=_header(1_700_000_000, "base_link"),
            agents=[agent_trajectory(i) for i in range(4)],
            model_id="lite@0123abcd", backend="torch-cpu/fp32", inference_time_ms=12.75,
            stale_cameras=["front_left"]),
        msgtype("PredictedFrames"): _t(msgtype("PredictedFrames"))(
            header=_header(1_700_000_001, "camera_front_optical"), camera_name="front",
            time_step=_t("builtin_interfaces/msg/Duration")(sec=0, nanosec=100_000_000),
            frames=[image(seed) for seed in range(3)], model_id="lite@0123abcd"),
        msgtype("GroundTruthAgents"): _t(msgtype("GroundTruthAgents"))(
            header=_header(1_700_000_002, "base_link"),
            agents=[agent_trajectory(i, with_paths=False) for i in range(5)],
            source="sumo:berlin_adlershof seed=7"),
        msgtype("Float64Stamped"): _t(msgtype("Float64Stamped"))(
            stamp=_t("builtin_interfaces/msg/Time")(sec=1_700_000_003, nanosec=250_000_000), data=41.5),
    }


def cdr(typename: str, message: Any) -> bytes:
    """The message's CDR bytes, as rclpy and rosbag2 store them."""
    return bytes(TYPESTORE.serialize_cdr(message, typename))


def as_plain(message: Any) -> Any:
    """A rosbags message as nested dicts/lists, for comparing content.

    CDR bytes are not comparable across serializers: rosbags leaves alignment
    padding uninitialised where rclpy writes zeros.
    """
    if isinstance(message, np.ndarray):
        return message.tolist()
    if isinstance(message, (list, tuple)):
        return [as_plain(item) for item in message]
    if hasattr(message, "__dataclass_fields__"):
        return {name: as_plain(getattr(message, name)) for name in message.__dataclass_fields__}
    return message
